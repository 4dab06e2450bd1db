package delivery

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/redis/go-redis/v9"
)

// sample is a Gauge and a Histogram a test reads.
type sample struct {
	mu  sync.Mutex
	got []float64
}

func (s *sample) Set(v float64)     { s.Observe(v) }
func (s *sample) Observe(v float64) { s.mu.Lock(); s.got = append(s.got, v); s.mu.Unlock() }

func (s *sample) last() (float64, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) == 0 {
		return 0, 0
	}
	return s.got[len(s.got)-1], len(s.got)
}

// TestMetricsMailboxDepth: each fetch reports how many deliveries the device's
// mailbox holds after it, however many it returned; acks and expiries make it less.
func TestMetricsMailboxDepth(t *testing.T) {
	t.Parallel()
	depth := &sample{}
	f := newFixture(t, WithMetrics(Metrics{Mailbox: depth}))
	phone := f.device(recipient(0))
	f.send(time.Minute, phone)
	var sent []string
	for range fetchLimit + 6 {
		sent = append(sent, f.send(time.Hour, phone))
	}
	ds, _ := f.page(phone, "")
	if d, n := depth.last(); len(ds) != fetchLimit || n != 1 || d != fetchLimit+7 {
		t.Fatalf("a fetch of %d deliveries observed %v (%d observations), want %d once", len(ds), d, n, fetchLimit+7)
	}
	if _, err := f.svc.Mailboxes().Ack(f.ctx, phone, sent[:2], false); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(2 * time.Minute) // the first message expires: the next fetch drops it
	f.page(phone, "")
	if d, n := depth.last(); n != 2 || d != fetchLimit+4 {
		t.Fatalf("after 2 acks and an expiry: observed %v (%d observations), want %d", d, n, fetchLimit+4)
	}
}

// TestMetricsOutboxIndex: a sweep of the outbox index reports its size, in the round
// trip it makes anyway.
func TestMetricsOutboxIndex(t *testing.T) {
	t.Parallel()
	index := &sample{}
	f := newFixture(t, WithMetrics(Metrics{OutboxIndex: index}))
	old := float64(f.clock.Now().Add(-time.Minute).UnixMilli())
	for i := range 5 {
		uid := fmt.Sprintf("u%025d", i)
		if err := f.rdb.ZAdd(f.ctx, keys.OutboxIndex(uid), redis.Z{Score: old, Member: uid}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	trips := &countTrips{}
	f.rdb.AddHook(trips)
	if err := f.svc.forwarder.sweep(f.ctx); err != nil {
		t.Fatal(err)
	}
	if v, n := index.last(); n != 1 || v != 5 {
		t.Fatalf("the sweep reported %v (%d reports), want 5 once", v, n)
	}
	if n := trips.first(); n != keys.OutboxShards*2 {
		t.Fatalf("the sweep's first round trip held %d commands, want a range and a count per shard (%d)", n, keys.OutboxShards*2)
	}
}

// countTrips records the size of the first pipeline a client sends.
type countTrips struct {
	mu   sync.Mutex
	size []int
}

func (c *countTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *countTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (c *countTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.mu.Lock()
		c.size = append(c.size, len(cmds))
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (c *countTrips) first() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.size) == 0 {
		return 0
	}
	return c.size[0]
}
