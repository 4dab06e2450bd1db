// Package server is Herald's gRPC edge: the MessagingService, RecipientService and
// AdminService, their interceptors (recovery, logging, authentication), health and
// reflection. Handlers validate, translate between protos and the domain packages
// (blocklist, delivery, business), and map errors to gRPC statuses with google.rpc
// details; they decide nothing themselves.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
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
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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

	// What one gateway lets callers make it hold, and what one business may make
	// Redis hold (server/limits.go, README "Limits"): connections, streams, request
	// sizes, time. Zero fields take DefaultLimits's.
	Limits Limits
}

// Server is a Herald gateway.
type Server struct {
	cfg        Config
	log        *slog.Logger
	now        func() time.Time
	grpc       *grpc.Server
	health     *health.Server
	blocklist  *blocklist.Store
	admission  *admission.Admitter
	businesses *business.Store
	delivery   *delivery.Service
	quality    business.QualityPolicy
	// keyLog and logSigner are the key log; nil without Config.LogKey.
	keyLog    *store.Log
	logSigner *keylog.Signer
	proofs    sync.Map // business id/key id -> cachedProof

	// limits are Config.Limits with the defaults filled in; the fields after it
	// enforce and report them (limits.go, tap.go, guesses.go).
	limits       Limits
	streamCounts *streamCounts
	openCalls    *openGate
	refusals     *refusalLog
	guesses      *guesses
	openConns    atomic.Int64 // client connections open, on every listener

	// streams is canceled at shutdown so that long-lived streams end and the server
	// can stop gracefully.
	streams        context.Context
	stopStreams    context.CancelFunc
	background     sync.WaitGroup
	stopBackground context.CancelFunc

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
	s.delivery = delivery.New(cfg.Redis, delivery.WithLogger(s.log.With("component", "delivery")),
		delivery.WithClock(s.now), delivery.WithQualityBucket(s.quality.Bucket),
		delivery.WithPollInterval(cfg.PollInterval), delivery.WithExpirySweep(cfg.ExpirySweep),
		delivery.WithReceiptWindow(cfg.ReceiptWindow), delivery.WithApprovalWait(cfg.ApprovalWait),
		delivery.WithSecret(cfg.Secret))
	s.limits = cfg.Limits.withDefaults()
	s.admission = admission.New(cfg.Redis, s.blocklist, s.businesses, admission.WithClock(s.now),
		admission.WithReplicas(cfg.Replicas), admission.WithLogger(s.log), admission.WithAdmitted(s.admitted),
		admission.WithPendingQuota(s.limits.PendingBytesPerBusiness), admission.WithLookupRate(s.limits.LookupRate))
	s.streams, s.stopStreams = context.WithCancel(context.Background())
	if cfg.LogKey != "" {
		signer, err := keylog.NewSigner(cfg.LogKey)
		if err != nil {
			return nil, fmt.Errorf("server: Config.LogKey: %w", err)
		}
		s.logSigner, s.keyLog = signer, store.New(cfg.Redis, signer)
	}

	s.streamCounts = newStreamCounts(s.limits.StreamsPerToken)
	s.openCalls = newOpenGate(s.limits.OpenCalls, s.limits.OpenCallsPerPeer)
	s.refusals = &refusalLog{s: s, kinds: map[string]*refusals{}}
	s.guesses = newGuesses()

	// Services are registered through reg, which runs the unary interceptors before a
	// request is read (decode.go).
	s.grpc = grpc.NewServer(append(s.serverOptions(),
		grpc.ChainUnaryInterceptor(s.unaryRecover, s.unaryLog, s.unaryAuth),
		grpc.ChainStreamInterceptor(s.streamRecover, s.streamLog, s.streamAuth, s.streamLimits),
	)...)
	reg := registrar{s}
	heraldv1.RegisterMessagingServiceServer(reg, s)
	heraldv1.RegisterRecipientServiceServer(reg, &recipientService{Server: s})
	heraldv1.RegisterAdminServiceServer(reg, &adminService{Server: s})
	heraldv1.RegisterKeyLogServiceServer(reg, &keyLogService{Server: s})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(reg, s.health)
	reflection.Register(reg)

	bg, stop := context.WithCancel(context.Background())
	s.stopBackground = stop
	s.background.Go(func() { s.delivery.Run(bg) })
	s.background.Go(func() { s.watchRedis(bg) })
	return s, nil
}

// GRPC is the underlying gRPC server, for tests that serve it on their own listener.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Serve serves on lis until Shutdown, keeping at most Limits.MaxConnections of its
// connections open.
func (s *Server) Serve(lis net.Listener) error {
	log := &connLog{s: s}
	return s.grpc.Serve(&limitListener{Listener: lis, open: &s.openConns, max: int64(s.limits.MaxConnections),
		refused: log.refused})
}

// Shutdown stops the server gracefully: it reports NOT_SERVING, ends open streams,
// lets unary calls in flight finish (each is one atomic Redis step, so none is left
// half-written), forwards pending status events and releases Redis. ctx bounds the
// wait; past it, remaining calls are cut off.
func (s *Server) Shutdown(ctx context.Context) {
	s.health.Shutdown()
	s.stopStreams()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
	}
	s.stopBackground()
	s.background.Wait()
	s.admission.Close() // gives leased rate tokens back to the other gateways
	s.delivery.Close()
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

// The logs name the method, code and duration: never tokens, numbers or ciphertext.
func (s *Server) unaryLog(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	s.logCall(ctx, info.FullMethod, start, err)
	return resp, err
}

func (s *Server) streamLog(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	err := h(srv, ss)
	s.logCall(ss.Context(), info.FullMethod, start, err)
	return err
}

func (s *Server) logCall(ctx context.Context, method string, start time.Time, err error) {
	code := status.Code(err)
	lvl := slog.LevelDebug
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		lvl = slog.LevelError
	case codes.Unavailable:
		lvl = slog.LevelWarn
	}
	s.log.Log(ctx, lvl, "rpc", "method", method, "code", code.String(), "duration", time.Since(start))
}
