package server

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/business"
	"github.com/heraldhq/herald/delivery"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/tap"
)

// The tap (grpc.InTapHandle) sees each call's method and metadata before gRPC creates
// its stream or reads a byte of its request, in the goroutine that reads the
// connection. So it does only what needs neither Redis nor time:
//
//   - A call to a service that needs credentials without one of the right shape (or,
//     for AdminService, without the admin token itself) is refused here. A credential
//     of the right shape is checked against Redis by the interceptors, which run
//     before the request is decoded (decode.go): until then gRPC holds at most one
//     stream window of it.
//   - A call that needs no credentials takes one of a few slots, until its request is
//     read or OpenCallRead passes: gRPC reads a request whole, up to its one receive
//     limit, before any handler can look at it, so what such calls can make the
//     gateway hold is bounded by the slots.
//   - Streams and open calls get a context the gateway can cancel (call), which ends
//     a stream whose client stopped reading (sendGuard) or an open call that is slow
//     to send its request.
//
// Why the tap does not look credentials up itself: it runs in the connection's read
// loop, holding the transport's lock, and a Redis round trip there (on every cache
// miss) would stall every other stream of the connection, its flow control and its
// pings with it. The interceptors do the lookup in the call's own goroutine instead,
// and since they run before the request is read, nothing of it is read either way.

// credential is what a method needs.
type credential int

const (
	credNone credential = iota
	credAPIKey
	credDevice
	credAdmin
)

func credentialOf(method string) credential {
	switch {
	case method == registerMethod:
		return credNone
	case strings.HasPrefix(method, messagingPrefix):
		return credAPIKey
	case strings.HasPrefix(method, recipientPrefix):
		return credDevice
	case strings.HasPrefix(method, adminPrefix):
		return credAdmin
	}
	return credNone // KeyLogService, health, reflection: open, as their clients expect
}

// streaming reports the methods whose streams the gateway may end early (sendGuard).
func streaming(method string) bool {
	return method == recipientPrefix+"Receive" || method == messagingPrefix+"StreamStatus"
}

// call is what the tap hands the rest of a call, in its context.
type call struct {
	// cancel ends the call: the stream's context is the one it cancels, which is what
	// gRPC's reads and writes of the stream wait on.
	cancel context.CancelFunc
	// open is the slot of a call that needs no credentials; nil for others.
	open *openSlot
}

type callKey struct{}

// callFrom is the call the tap saw, or nil for a stream that did not pass it.
func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// requestRead tells the call's open slot, if any, that its request has been read.
func (c *call) requestRead() {
	if c != nil && c.open != nil {
		c.open.release()
	}
}

func (s *Server) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	m := info.FullMethodName
	need := credentialOf(m)
	if need == credNone {
		gate := s.openCalls
		if strings.HasPrefix(m, "/grpc.health.v1.Health/") {
			gate = s.healthCalls
		}
		slot, err := gate.take(peerHost(ctx))
		if err != nil {
			s.refusals.note(ctx, "open call refused: too many in flight", m)
			return nil, err
		}
		ctx, cancel := context.WithCancel(ctx)
		slot.arm(s.limits.OpenCallRead, cancel)
		// The stream's context ends with the call, whatever ends it.
		context.AfterFunc(ctx, slot.release)
		return context.WithValue(ctx, callKey{}, &call{cancel: cancel, open: slot}), nil
	}
	if err := s.shaped(need, info.Header); err != nil {
		// A failed login, counted and logged as one (logCall writes at most a line
		// a second of each kind: an attacker does not get to flood the log). Counted under its method only if
		// there is such a method: a made-up name must not make a metric series.
		if s.methods[m] {
			s.metrics.call(m, err, 0)
		}
		if m == sendMethod || m == sendBatchMethod {
			s.metrics.sent(m, 0, nil, err)
		}
		s.logCall(ctx, m, &callRecord{}, err, 0)
		return nil, err
	}
	if !streaming(m) {
		return ctx, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	return context.WithValue(ctx, callKey{}, &call{cancel: cancel}), nil
}

// shaped checks, without Redis, that md carries a credential of the kind need and of
// its shape; the admin token it checks outright.
func (s *Server) shaped(need credential, md metadata.MD) error {
	tok, ok := bearerOf(md["authorization"]) // the transport's header names are lower case
	switch {
	case need == credAPIKey && (!ok || business.KeyID(tok) == ""):
		return unauthenticated("missing or malformed `authorization: Bearer <api key>` metadata")
	case need == credDevice && (!ok || !delivery.WellFormedToken(tok)):
		return unauthenticated("missing or malformed `authorization: Bearer <device token>` metadata")
	case need == credAdmin && (!ok || subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AdminToken)) != 1):
		return unauthenticated("missing or invalid admin token")
	}
	return nil
}

// peerHost is the address of the call's client, without its port.
func peerHost(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	h, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return p.Addr.String()
	}
	return h
}

// openGate holds the slots of calls that need no credentials.
type openGate struct {
	mu      sync.Mutex
	max     int
	perPeer int
	total   int
	peers   map[string]int
}

func newOpenGate(max, perPeer int) *openGate {
	return &openGate{max: max, perPeer: perPeer, peers: map[string]int{}}
}

func (g *openGate) take(peer string) (*openSlot, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.total >= g.max:
		return nil, exhaustedFor(fmt.Sprintf("the gateway is reading %d calls without credentials, the most it "+
			"reads at once; retry", g.max), time.Second, "TOO_MANY_OPEN_CALLS")
	case g.peers[peer] >= g.perPeer:
		return nil, exhaustedFor(fmt.Sprintf("this client address has %d calls without credentials being read, the "+
			"most allowed; retry when one has finished", g.perPeer), time.Second, "TOO_MANY_OPEN_CALLS")
	}
	g.total++
	g.peers[peer]++
	return &openSlot{g: g, peer: peer}, nil
}

// openSlot is one open call's place at the gate, held until its request is read or
// the call ends, and for at most the read timeout it is armed with.
type openSlot struct {
	g     *openGate
	peer  string
	timer *time.Timer
	done  atomic.Bool
}

// arm ends the call with cancel unless its request is read within d.
func (s *openSlot) arm(d time.Duration, cancel context.CancelFunc) {
	s.timer = time.AfterFunc(d, cancel)
}

func (s *openSlot) release() {
	if !s.done.CompareAndSwap(false, true) {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.peers[s.peer]--; g.peers[s.peer] <= 0 {
		delete(g.peers, s.peer)
	}
}

// tapFor is the tap of the public server or, with admin, of the admin server: each
// lets through, unchecked, the calls to services it does not serve, which gRPC then
// answers UNIMPLEMENTED, so that neither listener tells anything about the other's
// services or their credentials.
func (s *Server) tapFor(admin bool) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if strings.HasPrefix(info.FullMethodName, adminPrefix) != admin && credentialOf(info.FullMethodName) != credNone {
			return ctx, nil
		}
		return s.tap(ctx, info)
	}
}
