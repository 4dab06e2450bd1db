package server

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
)

// revocationWindow is the promise, written down here rather than worked out from
// the code: README, admin.proto and package business all say that a revoked API key
// stops working on every gateway within 4 seconds.
const revocationWindow = 4 * time.Second

// TestRevocationWindow: a key revoked through one gateway is refused there at once;
// another gateway that had verified it may go on trusting it from its cache, even
// while a refresh of that cache is stuck on a slow Redis, but not once the window has
// passed. The clock moves in steps of a tenth of a second and the second gateway is
// asked at every step, so a cache that kept the key a step longer than promised fails
// the test.
func TestRevocationWindow(t *testing.T) {
	c := newClock()
	a := startGateway(t, withClock(c))
	gate := newAPIKeyGate()
	rdb := redis.NewClient(&redis.Options{Addr: a.redis.Addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second,
		WriteTimeout: 2 * time.Second, MaxRetries: 1})
	rdb.AddHook(gate)
	b := startGatewayWith(t, rdb, withClock(c))
	t.Cleanup(gate.open) // before b shuts down, should the test stop early
	_, key := a.newBusiness("Acme")

	lookup := func(g *gateway) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := g.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: alice, Category: tx})
			done <- err
		}()
		return done
	}
	wait := func(done <-chan error) error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("no answer within 10s")
			return nil
		}
	}
	for _, g := range []*gateway{a, b} {
		if err := wait(lookup(g)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.admin.RevokeApiKey(a.adminCtx(), &heraldv1.RevokeApiKeyRequest{ApiKey: key}); err != nil {
		t.Fatal(err)
	}
	requireCode(t, wait(lookup(a)), codes.Unauthenticated, "")
	if err := wait(lookup(b)); err != nil {
		t.Fatalf("right after revoking, the other gateway: %v; the test means to show a cached key, and expected one", err)
	}

	// From here on, the first read of an API key that b makes gets no answer until
	// the end: a refresh stuck on a slow Redis, while other calls carry on.
	gate.arm()
	held := gate.held
	var stuck <-chan error // the call whose refresh is held
	const step = 100 * time.Millisecond
	for elapsed := time.Duration(0); ; elapsed += step {
		done := lookup(b)
		select {
		case <-held:
			held, stuck = nil, done
		case err := <-done:
			// Within the window the key may still be served; past it, never.
			if (err != nil || elapsed >= revocationWindow) && codeOf(err) != codes.Unauthenticated {
				t.Fatalf("%v after revoking, the other gateway answered %v; want UNAUTHENTICATED (promised within %v)",
					elapsed, err, revocationWindow)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer within 10s, %v after revoking", elapsed)
		}
		if elapsed >= revocationWindow {
			break
		}
		c.Add(step)
	}
	if stuck == nil {
		t.Fatal("the other gateway never went back to Redis for the key within the window")
	}
	gate.open()
	requireCode(t, wait(stuck), codes.Unauthenticated, "")
}

// apiKeyGate holds, once armed, the first command on an API key record that goes
// through the client, until opened.
type apiKeyGate struct {
	mu       sync.Mutex
	armed    bool
	held     chan struct{} // closed when it holds a command
	release  chan struct{} // closed by open
	openOnce sync.Once
}

func newAPIKeyGate() *apiKeyGate {
	return &apiKeyGate{held: make(chan struct{}), release: make(chan struct{})}
}

// open lets the held command, if any, through.
func (g *apiKeyGate) open() { g.openOnce.Do(func() { close(g.release) }) }

func (g *apiKeyGate) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed = true
}

// take reports whether cmd is the command to hold, and disarms the gate if so.
func (g *apiKeyGate) take(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) < 2 {
		return false
	}
	k, _ := args[1].(string)
	if !strings.HasPrefix(k, "hr:{k:") {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.armed {
		return false
	}
	g.armed = false
	return true
}

func (g *apiKeyGate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *apiKeyGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if g.take(cmd) {
			close(g.held)
			<-g.release
		}
		return next(ctx, cmd)
	}
}

func (g *apiKeyGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
