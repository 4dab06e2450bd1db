// Package server is Herald's gRPC edge: the MessagingService, RecipientService and
// KeyLogService on the public listener (with Connect, gRPC-Web and JSON beside gRPC),
// the AdminService on a listener of its own, their interceptors (metrics and access
// log, recovery, authentication), tracing, health, reflection and the listeners' TLS.
// Handlers validate, translate between protos and the domain packages (blocklist,
// delivery, business), and map errors to gRPC statuses with google.rpc details; they
// decide nothing themselves.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/admission"
	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/business"
	"github.com/heraldhq/herald/delivery"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/keylog"
	"github.com/heraldhq/herald/keylog/store"
	"github.com/heraldhq/herald/push"
	"github.com/heraldhq/herald/webhook"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Config is what a Server needs.
type Config struct {
	// Redis is where all state lives: a *redis.Client or a *redis.ClusterClient.
	Redis redis.UniversalClient
	// Secret keys the HMAC that turns phone numbers into recipient ids. Changing it
	// orphans every recipient's data.
	Secret []byte
	// AdminToken authorises AdminService calls.
	AdminToken string
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
	// Caps are the recipient caps (blocklist.DefaultCaps in heraldd); a zero field
	// turns that cap off. A zero NewWindow means 24 h.
	Caps blocklist.Caps
	// Quality is when spam reports step a business's limits down; zero fields take
	// business.DefaultQualityPolicy's.
	Quality business.QualityPolicy
	// Replicas is how many gateways the operator runs (at least 1): each gateway holds
	// at most B/(2·Replicas) of a business's burst, which tightens the over-admission
	// bound (package ratelimit). Gateways also count each other, so it is a floor.
	Replicas int
	// PollInterval is how often an open Receive or StreamStatus stream looks at Redis
	// without a notification; it bounds how late a notification lost while the pub/sub
	// connection was down delays a delivery (delivery.WithPollInterval). Zero means 5 s.
	PollInterval time.Duration
	// ExpirySweep is how often the gateway reports messages expired on devices that
	// never came back for them (delivery.WithExpirySweep). Zero means 5 s.
	ExpirySweep time.Duration
	// ReceiptWindow is how long a message that reached a device is kept, as a small
	// settled record, once no device has it queued, for late read receipts and reports
	// (delivery.WithReceiptWindow). Zero means delivery.DefaultReceiptWindow.
	ReceiptWindow time.Duration
	// ApprovalWait is how long a new device of a number that has devices waits for
	// approval before it becomes active unrefused (delivery.WithApprovalWait). Zero
	// means delivery.DefaultApprovalWait.
	ApprovalWait time.Duration
	// LogKey is the key log's signing key (keylog.GenerateKey's PRIVATE+KEY+… text).
	// With it the gateway logs every device key event in the key log and proves each
	// key LookupRecipient lists; without it there is no key log.
	LogKey string

	// Push services that devices are woken through (package push), each optional:
	// a device with a message waiting, an endpoint of one of them and no open Receive
	// stream gets one contentless wake-up per WakeInterval (zero: a minute).
	WebPush      *push.WebPush
	FCM          *push.FCM
	APNs         *push.APNs
	WakeInterval time.Duration

	// Webhooks: WebhookOptions configure the gateway's webhook dispatcher (tests let it
	// reach a local receiver with webhook.WithPrivateAddresses and WithTLSConfig).
	WebhookOptions []webhook.Option

	// Transport. The public listener (Serve) and the admin listener (ServeAdmin) are
	// two gRPC servers, so AdminService is never reachable on the public one.

	// TLS is the public listener's TLS configuration (TLSConfig makes one that follows
	// certificate files); nil serves plaintext, which only a loopback listener or a
	// network that encrypts by other means should get.
	TLS *tls.Config
	// AdminTLS is the admin listener's; nil serves it plaintext.
	AdminTLS *tls.Config

	// Observability. Metrics need no setting: every gateway counts into a registry
	// of its own, served by MetricsHandler, and times Redis round trips with a hook it
	// adds to Redis (so give each gateway a client of its own). Logger gets one access
	// line per RPC: at info, a failed login at warn, a failure of the gateway's at
	// warn or error.
	//
	// TracerProvider, when set, gets a span for every RPC (health checks aside) and
	// for each Redis round trip one makes, holding no token, number or ciphertext;
	// nil means no tracing, at no cost.
	TracerProvider trace.TracerProvider

	// What one gateway lets callers make it hold, and what one business may make
	// Redis hold (server/limits.go, README "Limits"): connections, streams, request
	// sizes, time. Zero fields take DefaultLimits's.
	Limits Limits
}

// Server is a Herald gateway.
type Server struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	grpc  *grpc.Server // the public listener's: businesses, devices, the key log
	admin *grpc.Server // the admin listener's: AdminService
	// methods are the full names of every method either server serves: what the
	// tap, which sees any name a client sends, may count in the metrics.
	methods    map[string]bool
	health     *health.Server
	blocklist  *blocklist.Store
	admission  *admission.Admitter
	businesses *business.Store
	delivery   *delivery.Service
	quality    business.QualityPolicy
	// keyLog and logSigner are the key log; nil without Config.LogKey.
	keyLog    *store.Log
	logSigner *keylog.Signer
	webhooks  *webhook.Store
	proofs    sync.Map // business id/key id -> cachedProof
	metrics   *metrics
	tracing   *tracing // nil without Config.TracerProvider

	// limits are Config.Limits with the defaults filled in; the fields after it
	// enforce and report them (limits.go, tap.go, guesses.go).
	limits       Limits
	streamCounts *streamCounts
	openCalls    *openGate
	// healthCalls are the open calls of health checks, in slots of their own so
	// that slow registrations cannot starve a load balancer's probes.
	healthCalls *openGate
	refusals    *refusalLog
	guesses     *guesses
	openConns   atomic.Int64 // client connections open, on every listener

	// streams is canceled at shutdown so that long-lived streams end and the server
	// can stop gracefully.
	streams        context.Context
	stopStreams    context.CancelFunc
	background     sync.WaitGroup
	stopBackground context.CancelFunc

	// http is the public listener's HTTP side (http.go); listeners are what Serve
	// accepts on, closed by Shutdown.
	http      *http.Server
	mu        sync.Mutex
	listeners []net.Listener
	stopping  bool

	heraldv1.UnimplementedMessagingServiceServer
}

// New builds a Server and starts its background work (status forwarding, Redis
// health watching). Serve it with Serve; stop it with Shutdown.
func New(cfg Config) (*Server, error) {
	if cfg.Redis == nil {
		return nil, errors.New("server: Config.Redis is required")
	}
	if len(cfg.Secret) < 16 {
		return nil, errors.New("server: Config.Secret must be at least 16 bytes")
	}
	if cfg.AdminToken == "" {
		return nil, errors.New("server: Config.AdminToken is required")
	}
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.blocklist = blocklist.New(cfg.Redis, cfg.Caps)
	s.businesses = business.New(cfg.Redis)
	s.quality = cfg.Quality
	d := business.DefaultQualityPolicy
	if s.quality.Threshold <= 0 {
		s.quality.Threshold = d.Threshold
	}
	if s.quality.Window <= 0 {
		s.quality.Window = d.Window
	}
	if s.quality.MinDelivered <= 0 {
		s.quality.MinDelivered = d.MinDelivered
	}
	if s.quality.Bucket <= 0 {
		s.quality.Bucket = d.Bucket
	}
	s.metrics, s.tracing = newMetrics(), newTracing(cfg.TracerProvider)
	cfg.Redis.AddHook(s.metrics.redisHook(s.tracing))
	s.delivery = delivery.New(cfg.Redis, delivery.WithLogger(s.log.With("component", "delivery")), delivery.WithMetrics(s.metrics.delivery),
		delivery.WithClock(s.now), delivery.WithQualityBucket(s.quality.Bucket),
		delivery.WithPollInterval(cfg.PollInterval), delivery.WithExpirySweep(cfg.ExpirySweep),
		delivery.WithReceiptWindow(cfg.ReceiptWindow), delivery.WithApprovalWait(cfg.ApprovalWait),
		delivery.WithSecret(cfg.Secret), delivery.WithPush(pushers(cfg), cfg.WakeInterval))
	s.limits = cfg.Limits.withDefaults()
	s.admission = admission.New(cfg.Redis, s.blocklist, s.businesses, admission.WithClock(s.now),
		admission.WithReplicas(cfg.Replicas), admission.WithLogger(s.log), admission.WithAdmitted(s.admitted),
		admission.WithMetrics(s.metrics.admission), admission.WithPendingQuota(s.limits.PendingBytesPerBusiness),
		admission.WithLookupRate(s.limits.LookupRate))
	s.streams, s.stopStreams = context.WithCancel(context.Background())
	s.webhooks = webhook.NewStore(cfg.Redis)
	dispatcher := webhook.New(cfg.Redis, append([]webhook.Option{webhook.WithLogger(s.log.With("component", "webhook")),
		webhook.WithClock(s.now)}, cfg.WebhookOptions...)...)
	if cfg.LogKey != "" {
		signer, err := keylog.NewSigner(cfg.LogKey)
		if err != nil {
			return nil, fmt.Errorf("server: Config.LogKey: %w", err)
		}
		s.logSigner, s.keyLog = signer, store.New(cfg.Redis, signer)
	}

	s.streamCounts = newStreamCounts(s.limits.StreamsPerToken)
	s.openCalls = newOpenGate(s.limits.OpenCalls, s.limits.OpenCallsPerPeer)
	s.healthCalls = newOpenGate(s.limits.OpenCalls, s.limits.OpenCallsPerPeer)
	s.refusals = &refusalLog{s: s, kinds: map[string]*refusals{}}
	s.guesses = newGuesses()

	interceptors := append(s.tracing.serverOptions(),
		grpc.ChainUnaryInterceptor(s.unaryObserve, s.unaryRecover, s.unaryAuth),
		grpc.ChainStreamInterceptor(s.streamObserve, s.streamRecover, s.streamAuth, s.streamLimits))
	opts := append(s.serverOptions(false), interceptors...)
	// The public server's TLS is ended by Serve's router (http.go), which shares the
	// listener with the HTTP side; the admin server does its own. Services are
	// registered through a registrar, which runs the unary interceptors before a
	// request is read (decode.go).
	s.grpc = grpc.NewServer(slices.Clip(opts)...)
	s.admin = grpc.NewServer(append(append(s.serverOptions(true), interceptors...), transportCreds(cfg.AdminTLS)...)...)
	reg, adminReg := registrar{s, s.grpc}, registrar{s, s.admin}
	heraldv1.RegisterMessagingServiceServer(reg, s)
	heraldv1.RegisterRecipientServiceServer(reg, &recipientService{Server: s})
	heraldv1.RegisterKeyLogServiceServer(reg, &keyLogService{Server: s})
	heraldv1.RegisterAdminServiceServer(adminReg, &adminService{Server: s})
	s.health = health.NewServer()
	for _, r := range []registrar{reg, adminReg} {
		healthpb.RegisterHealthServer(r, s.health)
		reflection.Register(r)
	}
	s.methods = map[string]bool{}
	for _, srv := range []*grpc.Server{s.grpc, s.admin} {
		for name, info := range srv.GetServiceInfo() {
			for _, m := range info.Methods {
				s.methods["/"+name+"/"+m.Name] = true
			}
		}
	}
	var err error
	if s.http, err = s.newHTTPServer(); err != nil {
		return nil, err
	}

	bg, stop := context.WithCancel(context.Background())
	s.stopBackground = stop
	s.background.Go(func() { s.delivery.Run(bg) })
	s.background.Go(func() { s.watchRedis(bg) })
	s.background.Go(func() { dispatcher.Run(bg) })
	s.metrics.watch(s.delivery.Waker(), dispatcher)
	return s, nil
}

// GRPC is the public listener's gRPC server, for tests that serve it on their own
// listener.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// closing reports whether Shutdown has begun.
func (s *Server) closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// ServeAdmin serves AdminService, with health and reflection, on lis until Shutdown.
// Give it a listener only operators can reach: loopback, or a private network with
// Config.AdminTLS. A gateway that serves no admin listener is operated through
// another gateway on the same Redis. Tests and embedding programs serve it beside
// Serve on a second loopback listener.
func (s *Server) ServeAdmin(lis net.Listener) error { return s.admin.Serve(lis) }

// Shutdown stops the server gracefully: it reports NOT_SERVING, ends open streams,
// lets unary calls in flight finish (each is one atomic Redis step, so none is left
// half-written), forwards pending status events and releases Redis. ctx bounds the
// wait; past it, remaining calls are cut off.
func (s *Server) Shutdown(ctx context.Context) {
	s.health.Shutdown()
	s.stopStreams()
	s.mu.Lock()
	s.stopping = true
	for _, l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	httpDone := make(chan struct{})
	go func() { s.http.Shutdown(ctx); close(httpDone) }()
	defer func() { <-httpDone }()
	var stopped sync.WaitGroup
	for _, g := range []*grpc.Server{s.grpc, s.admin} {
		stopped.Go(func() {
			done := make(chan struct{})
			go func() { g.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				g.Stop()
			}
		})
	}
	stopped.Wait()
	s.stopBackground()
	s.background.Wait()
	s.admission.Close() // gives leased rate tokens back to the other gateways
	s.delivery.Close()
}

// transportCreds is the server option for a listener's TLS configuration; none
// (plaintext) for nil.
func transportCreds(c *tls.Config) []grpc.ServerOption {
	if c == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(c))}
}

// watchRedis keeps the health service's status in step with Redis, so load
// balancers route around a gateway that cannot reach it.
func (s *Server) watchRedis(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.cfg.Redis.Ping(pctx).Err()
		cancel()
		st := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if ctx.Err() != nil {
			return
		}
		s.health.SetServingStatus("", st)
		for _, svc := range []string{"herald.v1.MessagingService", "herald.v1.RecipientService", "herald.v1.AdminService"} {
			s.health.SetServingStatus(svc, st)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// streamContext ends when either the call or the server's stream lifetime ends.
func (s *Server) streamContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.streams, cancel)
	return ctx, func() { stop(); cancel() }
}

func (s *Server) unaryRecover(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return h(ctx, req)
}

func (s *Server) streamRecover(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return h(srv, ss)
}
