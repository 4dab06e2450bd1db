package server

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
)

// sendTrips counts the Redis round trips made while serving RPCs (a pipeline is
// one), apart from the rate limiter's leases, which are shared by many messages.
type sendTrips struct {
	trips, leases atomic.Int64
}

func (s *sendTrips) count(ctx context.Context, cmds []redis.Cmder) {
	if _, ok := grpc.Method(ctx); !ok {
		return // background work: forwarding, expiry indexing, health
	}
	switch cmds[0].Name() {
	case "hello", "client", "auth", "select":
		return // a new connection's handshake, once per connection
	}
	for _, c := range cmds {
		for _, a := range c.Args() {
			if k, ok := a.(string); ok && strings.HasSuffix(k, ":gcra") {
				s.leases.Add(1)
				return
			}
		}
	}
	s.trips.Add(1)
}

func (s *sendTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *sendTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		s.count(ctx, []redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}
func (s *sendTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		s.count(ctx, cmds)
		return next(ctx, cmds)
	}
}

// The Send path costs one Redis round trip per recipient: a Send to a person the
// business has reached is one round trip and a batch of them one pipeline, and the
// business's rate adds none per message. A first contact, for a business with a
// new-recipient allowance, costs two more (the lease, the admission again).
func TestSendCostsOneRoundTripPerRecipient(t *testing.T) {
	t.Parallel()
	c := newClock() // frozen: caches stay warm, so every trip counted is the Send's own
	g := startGateway(t, withClock(c))
	biz, key := g.newBusiness("A")
	g.setLimits(biz, 1e6, 1e6, 1000)
	const people = 40
	devs := make([]device, people)
	number := func(i int) string { return fmt.Sprintf("+1415555%04d", 400+i) }
	for i := range devs {
		devs[i] = g.register(number(i))
	}
	rt := &sendTrips{}
	g.srv.cfg.Redis.AddHook(rt)
	send := func(i int, id string) {
		t.Helper()
		if r := g.send(key, msg(number(i), tx, rcpt, id, "x", devs[i])); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
			t.Fatalf("send to %d: %v", i, r)
		}
	}
	// The first Send loads the API key, the limits and the first rate lease, and
	// teaches Redis the scripts (a one-time EVAL after NOSCRIPT).
	send(0, "warm")
	leases := rt.leases.Load()

	for i := 1; i < people; i++ {
		before := rt.trips.Load()
		send(i, "first")
		if n := rt.trips.Load() - before; n != 3 {
			t.Fatalf("first contact with person %d: %d round trips, want 3 (admit, lease, admit)", i, n)
		}
	}
	before := rt.trips.Load()
	for i := range people {
		send(i, "again")
	}
	if n := rt.trips.Load() - before; n != people {
		t.Fatalf("%d Sends to people already reached: %d round trips, want %d", people, n, people)
	}
	req := &heraldv1.SendBatchRequest{}
	for i := range people {
		req.Messages = append(req.Messages, msg(number(i), tx, rcpt, "batch", "x", devs[i]))
	}
	before = rt.trips.Load()
	resp, err := g.messaging.SendBatch(as(key), req)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.Results {
		if r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
			t.Fatalf("batch entry %d: %v", i, r)
		}
	}
	if n := rt.trips.Load() - before; n != 1 {
		t.Fatalf("a batch to %d people: %d round trips, want 1", people, n)
	}
	// 2·people messages went out after the warm-up; leases are shared by many.
	if n := rt.leases.Load() - leases; n > 5 {
		t.Fatalf("the rate limiter leased %d times on the Send path for %d messages", n, 3*people)
	}
}
