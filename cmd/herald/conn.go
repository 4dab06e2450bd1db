package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
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
	if c.useTLS(addr) {
		// A nil RootCAs means the system roots.
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
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

// follow hands each message of a server stream to handle, in order, until the stream
// ends or ctx is done. Unless forever is set, it also stops after idleWait without a
// message, measured from when the previous message was handled so that slow handling
// (an Ack per message) does not cut the backlog short. Stopping that way or by ctx is
// not an error: it is how a user ends the command.
func follow[T any](ctx context.Context, stream grpc.ServerStreamingClient[T], cancel context.CancelFunc, forever bool, handle func(*T) error) error {
	msgs := make(chan *T)
	failed := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				failed <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	// cancel is the stream's own; calling it on every return ends the receiving
	// goroutine and the stream with it.
	defer cancel()

	var idle <-chan time.Time
	var timer *time.Timer
	if !forever {
		timer = time.NewTimer(idleWait)
		defer timer.Stop()
		idle = timer.C
	}
	for {
		select {
		case m := <-msgs:
			if err := handle(m); err != nil {
				return err
			}
			if timer != nil {
				timer.Reset(idleWait)
			}
		case err := <-failed:
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		case <-idle:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// connect dials the gateway with the token of kind, or says where to put one.
func (c *cli) connect(fs *flag.FlagSet, kind tokenKind) (*grpc.ClientConn, error) {
	token := c.cfg.token(kind)
	if token == "" {
		return nil, usageErr(fs, "no %s: set --token, %s or HERALD_TOKEN", kind.what, kind.env)
	}
	return c.cfg.dial(c.cfg.Addr, token)
}
