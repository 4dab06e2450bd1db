package main

import (
	"context"
	"errors"
	"flag"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// callTimeout bounds each unary call, so a gateway that accepts the connection but
// never answers does not hang a script. Streams are not bounded: --follow is meant to
// run until interrupted.
const callTimeout = 30 * time.Second

// idleWait is how long a stream without --follow waits for one more message before it
// considers the backlog drained. The gateway sends what is queued at once, so a second
// of silence means there is nothing more to catch up on.
const idleWait = time.Second

// dial connects to addr, sending token (if any) on every call.
func (c *Config) dial(addr, token string) (*grpc.ClientConn, error) {
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	useTLS := c.useTLS(addr)
	if useTLS {
		cfg, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	} else if c.CA != "" || c.ClientCert != "" {
		return nil, errors.New("--tls=false leaves --ca and --client-cert unused: drop one or the other")
	}
	c.dialed = dialed{addr: addr, tls: useTLS}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithUnaryInterceptor(boundUnary),
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	return grpc.NewClient(addr, opts...)
}

// boundUnary gives a unary call callTimeout unless its context already has a deadline.
func boundUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, callTimeout)
		defer cancel()
	}
	return invoke(ctx, method, req, reply, cc, opts...)
}

// bearer sends a token as `authorization: Bearer <token>` metadata.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false because the dev gateway on loopback is plaintext;
// Config.useTLS already keeps tokens off plaintext connections to other hosts unless
// the user asked for that with --tls=false.
func (b bearer) RequireTransportSecurity() bool { return false }

// idle ends a stream command once it has caught up: unless forever is set, its
// context is canceled after idleWait without a message. The wait is measured from
// when the previous message was handled (pause when one arrives, resume when done),
// so that slow handling (an Ack per message) does not cut the backlog short. Ending
// that way, or by the user's interrupt, is how the command ends, not an error.
type idle struct {
	timer  *time.Timer
	cancel context.CancelFunc
}

func idleContext(ctx context.Context, forever bool) (context.Context, *idle) {
	ctx, cancel := context.WithCancel(ctx)
	i := &idle{cancel: cancel}
	if !forever {
		i.timer = time.AfterFunc(idleWait, cancel)
	}
	return ctx, i
}

func (i *idle) pause() {
	if i.timer != nil {
		i.timer.Stop()
	}
}

func (i *idle) resume() {
	if i.timer != nil {
		i.timer.Reset(idleWait)
	}
}

func (i *idle) stop() {
	i.pause()
	i.cancel()
}

// checkServing asks the gateway's health service whether it is serving. The SDK's
// streams reconnect quietly when the gateway is unreachable, as a long-running
// consumer wants; a command that stops once caught up checks first, so that an
// unreachable gateway is an error rather than "nothing new". A gateway without the
// health service is taken at its word.
func checkServing(ctx context.Context, conn grpc.ClientConnInterface) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	switch {
	case status.Code(err) == codes.Unimplemented:
		return nil
	case err != nil:
		return err
	case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
		return status.Errorf(codes.Unavailable, "the gateway reports %s (is its Redis reachable?)", resp.GetStatus())
	}
	return nil
}

// connect dials the gateway with the token of kind, or says where to put one. The
// admin token goes to the admin listener, everything else to the public one.
func (c *cli) connect(fs *flag.FlagSet, kind tokenKind) (*grpc.ClientConn, error) {
	token := c.cfg.token(kind)
	if token == "" {
		return nil, usageErr(fs, "no %s: set --token, %s or HERALD_TOKEN", kind.what, kind.env)
	}
	addr := c.cfg.Addr
	if kind == adminToken {
		addr = c.cfg.AdminAddr
	}
	return c.cfg.dial(addr, token)
}
