package server

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/admission"
	"github.com/heraldhq/herald/business"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Limits bound what callers can make one gateway hold: connections, streams, request
// bytes, time. Each is a refusal a hostile or broken client meets long before the
// gateway's memory or Redis does. The zero value of a field takes its default
// (DefaultLimits).
//
// How the bounds add up, for one gateway (README, Limits):
//   - A connection costs gRPC's buffers (about 70 KiB) and at most MaxStreamsPerConn
//     streams; at most MaxConnections are open.
//   - A call that needs credentials is refused before a byte of its request is read:
//     the tap refuses a missing or malformed credential before the stream exists, and
//     the interceptors check the credential before the request is decoded, so a caller
//     without one makes the gateway hold at most one flow-control window (64 KiB) per
//     stream.
//   - A call that needs none (RegisterDevice, KeyLogService, health, reflection) is read
//     only in one of OpenCalls slots (OpenCallsPerPeer per client address), held until
//     its request is read and at most OpenCallRead long (health checks in as many
//     slots of their own, so that slow registrations cannot starve a load balancer's
//     probes): what callers without credentials can make the gateway hold is
//     2 × OpenCalls × MaxBatchBytes at most.
//   - A request larger than its method allows is refused RESOURCE_EXHAUSTED: gRPC's
//     one limit (MaxBatchBytes, for SendBatch) before the body is read, the method's
//     (requestLimit) before it is decoded.
//   - A stream whose client does not take a message within SendTimeout ends, and one
//     device or API key holds at most StreamsPerToken streams per gateway.
type Limits struct {
	// MaxConnections is how many client connections the gateway keeps open; one more
	// is closed at once, so that its client tries another gateway. Default 10,000.
	MaxConnections int
	// MaxStreamsPerConn is how many calls one connection may have open at once (HTTP/2
	// SETTINGS_MAX_CONCURRENT_STREAMS: clients queue beyond it). Default 256.
	MaxStreamsPerConn uint32
	// StreamsPerToken is how many Receive streams one device, and StreamStatus streams
	// one API key, may hold open on the gateway at once. Default 4: enough for a
	// client that reconnects while its old stream has not yet been found dead.
	StreamsPerToken int
	// MaxBatchBytes is the largest SendBatch request (gRPC's receive limit: every other
	// method has its own, smaller one). Default 16 MiB, the Go SDK's batch size.
	MaxBatchBytes int
	// OpenCalls is how many calls that need no credentials may be read at once, and
	// OpenCallsPerPeer how many of them one client address may. Defaults 16 and 4.
	OpenCalls        int
	OpenCallsPerPeer int
	// OpenCallRead is how long a call that needs no credentials has to deliver its
	// request; past it the call is ended. Default 10 s.
	OpenCallRead time.Duration
	// SendTimeout is how long a stream may wait for its client to take a message (gRPC
	// flow control: a client that stops reading stops the stream) before the gateway
	// ends it; what it did not deliver stays queued. Default 30 s.
	SendTimeout time.Duration
	// IdleConnection is how long a connection with no call open stays open. Default 5 min.
	IdleConnection time.Duration
	// Ping is how long a connection may be silent before the gateway pings its client,
	// which must answer within PingTimeout or be dropped: a client that vanished
	// frees its streams within Ping+PingTimeout. Defaults 1 min and 20 s.
	Ping, PingTimeout time.Duration
	// MinClientPing is how often a client may ping the gateway at most; one that
	// pings more often is disconnected. Default 20 s.
	MinClientPing time.Duration

	// PendingBytesPerBusiness is how many bytes one business's messages in flight may
	// hold in Redis (package admission, quota.go); past it a message is
	// OUTCOME_QUOTA_EXCEEDED. Default 256 MiB; negative turns the quota off.
	PendingBytesPerBusiness int64
	// LookupRate is the rate of a business's LookupRecipient and RecordConsent calls,
	// as a multiple of its message rate and burst. Default 2.
	LookupRate float64
}

// DefaultLimits are the limits a gateway runs with unless told otherwise.
var DefaultLimits = Limits{
	MaxConnections:    10_000,
	MaxStreamsPerConn: 256,
	StreamsPerToken:   4,
	MaxBatchBytes:     16 << 20,
	OpenCalls:         16,
	OpenCallsPerPeer:  4,
	OpenCallRead:      10 * time.Second,
	SendTimeout:       30 * time.Second,
	IdleConnection:    5 * time.Minute,
	Ping:              time.Minute,
	PingTimeout:       20 * time.Second,
	MinClientPing:     20 * time.Second,

	PendingBytesPerBusiness: admission.DefaultPendingQuota,
	LookupRate:              admission.DefaultLookupFactor,
}

// withDefaults fills l's zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	pick := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	pickD := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&l.MaxConnections, d.MaxConnections)
	pick(&l.StreamsPerToken, d.StreamsPerToken)
	pick(&l.MaxBatchBytes, d.MaxBatchBytes)
	pick(&l.OpenCalls, d.OpenCalls)
	pick(&l.OpenCallsPerPeer, d.OpenCallsPerPeer)
	if l.MaxStreamsPerConn == 0 {
		l.MaxStreamsPerConn = d.MaxStreamsPerConn
	}
	pickD(&l.OpenCallRead, d.OpenCallRead)
	pickD(&l.SendTimeout, d.SendTimeout)
	pickD(&l.IdleConnection, d.IdleConnection)
	pickD(&l.Ping, d.Ping)
	pickD(&l.PingTimeout, d.PingTimeout)
	pickD(&l.MinClientPing, d.MinClientPing)
	switch {
	case l.PendingBytesPerBusiness == 0:
		l.PendingBytesPerBusiness = d.PendingBytesPerBusiness
	case l.PendingBytesPerBusiness < 0:
		l.PendingBytesPerBusiness = 0 // off
	}
	if l.LookupRate <= 0 {
		l.LookupRate = d.LookupRate
	}
	return l
}

// The receive limits of methods other than SendBatch, checked on the request's length
// before it is decoded (decode.go). Every field of every request has a documented
// bound (validate.go); these bound the request as a whole, unknown fields included.
const (
	// maxSendRequest: 16 envelopes and a body of 64 KiB each, with room to spare.
	maxSendRequest = 2 << 20
	// maxRequest: everything else (an Ack of 1000 ids and 1000 notice ids is about
	// 100 KiB).
	maxRequest = 256 << 10
	// streamWindow is the flow-control window of a stream before its request is read:
	// what a caller can make the gateway buffer before it checks the caller's
	// credentials. gRPC opens the window for the whole request once it reads the
	// request's length, so it does not slow large requests down.
	streamWindow = 64 << 10
	// connWindow is the connection's flow-control window, as large as gRPC's own
	// dynamic window grows: it holds no memory by itself (a stream's data beyond its
	// window is a protocol error), and a small one would slow large batches.
	connWindow = 16 << 20
)

// requestLimit is the largest request method accepts.
func (s *Server) requestLimit(method string) int {
	switch method {
	case messagingPrefix + "SendBatch":
		return s.limits.MaxBatchBytes
	case messagingPrefix + "Send":
		return maxSendRequest
	}
	return maxRequest
}

// serverOptions are the gRPC options that enforce the limits, for the public server
// or, with admin, the admin server.
func (s *Server) serverOptions(admin bool) []grpc.ServerOption {
	l := s.limits
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxBatchBytes),
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		grpc.MaxConcurrentStreams(l.MaxStreamsPerConn),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: l.IdleConnection, Time: l.Ping,
			Timeout: l.PingTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.MinClientPing, PermitWithoutStream: true}),
		grpc.InTapHandle(s.tapFor(admin)),
		grpc.ForceServerCodecV2(codec{}),
		// Calls run on long-lived workers: a fresh goroutine per call starts with a
		// small stack and copies it as it grows through the interceptors, the
		// handler and the Redis client, which profiles put at a tenth of a Send's
		// CPU. With every worker busy, a call gets a goroutine of its own as before.
		grpc.NumStreamWorkers(uint32(streamWorkers)),
	}
}

// streamWorkers is how many calls run on reused goroutines at once: enough to keep
// every core busy while some wait on Redis.
var streamWorkers = 16 * runtime.GOMAXPROCS(0)

// streamCounts counts the open streams of each token on this gateway.
type streamCounts struct {
	mu   sync.Mutex
	max  int
	open map[string]int
}

func newStreamCounts(max int) *streamCounts {
	return &streamCounts{max: max, open: map[string]int{}}
}

// take opens a stream for token, or reports that it holds the most already. release
// closes it.
func (c *streamCounts) take(token string) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[token] >= c.max {
		return nil, false
	}
	c.open[token]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.open[token]--; c.open[token] <= 0 {
				delete(c.open, token)
			}
		})
	}, true
}

// streamToken names who holds a Receive or StreamStatus stream, for StreamsPerToken:
// the device, or the API key; "" for other methods.
func streamToken(ctx context.Context, method string) string {
	switch method {
	case recipientPrefix + "Receive":
		p := deviceFrom(ctx)
		return "d/" + p.UID + "/" + p.DeviceID
	case messagingPrefix + "StreamStatus":
		tok, _ := bearer(ctx)
		return "k/" + business.KeyID(tok)
	}
	return ""
}

// streamLimits is the stream interceptor that holds long-lived streams to their
// limits: at most StreamsPerToken per device or API key, and no message waiting on
// the client longer than SendTimeout. It runs after authentication.
func (s *Server) streamLimits(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	tok := streamToken(ss.Context(), info.FullMethod)
	if tok == "" {
		return h(srv, ss)
	}
	release, ok := s.streamCounts.take(tok)
	if !ok {
		return withInfo(codes.ResourceExhausted, fmt.Sprintf("this credential has %d streams of this kind open on this "+
			"gateway, the most allowed; close one first", s.limits.StreamsPerToken), "TOO_MANY_STREAMS")
	}
	defer release()
	c := callFrom(ss.Context())
	if c == nil {
		return h(srv, ss) // not through the tap: a test serving the handler directly
	}
	g := &sendGuard{ServerStream: ss, timeout: s.limits.SendTimeout, cancel: c.cancel}
	err := h(srv, g)
	if g.expired.Load() {
		s.log.InfoContext(ss.Context(), "stream ended: its client took no message", "method", info.FullMethod,
			"wait", s.limits.SendTimeout)
		return withInfo(codes.DeadlineExceeded, fmt.Sprintf("the client took no message for %v; what was not "+
			"delivered stays queued", s.limits.SendTimeout), "CLIENT_NOT_READING")
	}
	return err
}

// sendGuard ends its stream when one message waits on the client longer than
// timeout. gRPC's flow control stops a stream whose client does not read: what the
// gateway queued for it is bounded by the stream's window and gRPC's write quota, and
// the guard frees the rest (the handler and what it holds) by cancelling the stream's
// context, which a blocked send returns on.
type sendGuard struct {
	grpc.ServerStream
	timeout time.Duration
	cancel  context.CancelFunc
	timer   *time.Timer
	expired atomic.Bool
}

func (g *sendGuard) SendMsg(m any) error {
	if g.timer == nil {
		g.timer = time.AfterFunc(g.timeout, g.expire)
	} else {
		g.timer.Reset(g.timeout)
	}
	err := g.ServerStream.SendMsg(m)
	g.timer.Stop()
	return err
}

func (g *sendGuard) expire() {
	g.expired.Store(true)
	g.cancel()
}

// limitListener closes the connections it accepts beyond max open at once (counted in
// open, which the gateway's listeners share): a client refused at once tries another
// gateway, where one left waiting in the listen queue would wait for its timeout.
type limitListener struct {
	net.Listener
	open    *atomic.Int64
	max     int64
	refused func()
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			c.Close()
			l.refused()
			continue
		}
		return &countedConn{Conn: c, l: l}, nil
	}
}

// countedConn gives its place back when it closes.
type countedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// connLog logs refused connections at most once per second.
type connLog struct {
	s    *Server
	last atomic.Int64
}

func (c *connLog) refused() {
	now := time.Now().UnixNano()
	if last := c.last.Load(); now-last > int64(time.Second) && c.last.CompareAndSwap(last, now) {
		c.s.log.Warn("connections refused: the gateway has the most open it allows", "max", c.s.limits.MaxConnections)
	}
}

// exhaustedFor is RESOURCE_EXHAUSTED with a RetryInfo and the reason a client
// branches on.
func exhaustedFor(msg string, retry time.Duration, reason string) error {
	st, _ := status.New(codes.ResourceExhausted, msg).WithDetails(
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)},
		&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain})
	return st.Err()
}

// refusalLog logs refusals made before a call has a handler (so before the logging
// interceptor sees it) at warn, at most once a second per kind, with how many were
// not logged since: a flood of bad calls must not become a flood of log lines.
type refusalLog struct {
	s     *Server
	mu    sync.Mutex
	kinds map[string]*refusals
}

type refusals struct {
	last   time.Time
	unseen int
}

func (r *refusalLog) note(ctx context.Context, kind, method string) {
	if unseen, ok := r.due(kind); ok {
		r.s.log.Warn(kind, "method", method, "peer", peerHost(ctx), "not_logged_since_last", unseen)
	}
}

// due says whether a refusal of kind is to be logged now (at most one a second), and
// how many were not since the last that was.
func (r *refusalLog) due(kind string) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.kinds[kind]
	if k == nil {
		k = &refusals{}
		r.kinds[kind] = k
	}
	now := r.s.now()
	if now.Sub(k.last) < time.Second {
		k.unseen++
		return 0, false
	}
	unseen := k.unseen
	k.last, k.unseen = now, 0
	return unseen, true
}
