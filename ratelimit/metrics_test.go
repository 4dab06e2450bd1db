package ratelimit

import (
	"sync"
	"testing"

	"github.com/heraldhq/herald/internal/redistest"
)

// count is a Counter a test reads.
type count struct {
	mu sync.Mutex
	v  float64
}

func (c *count) Add(v float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.v += v
}

func (c *count) get() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.v
}

// TestMetricsCountLeasesAndRefusals: what a Limiter leased and refused is what it
// counts; a refusal answered without Redis counts no lease.
func TestMetricsCountLeasesAndRefusals(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	clock := newTestClock()
	var leases, leased, refused count
	l, calls := gateway(t, s, WithClock(clock.Now), WithMetrics(Metrics{Leases: &leases, Leased: &leased, Refused: &refused}))

	r := allow(t, l, "b1", PerSecond(1, 10), 25)
	if r.Allowed != 10 {
		t.Fatalf("25 against a burst of 10: %+v, want 10 allowed", r)
	}
	if got := refused.get(); got != 15 {
		t.Errorf("refused = %v, want 15", got)
	}
	// With the clock stopped the bucket holds nothing more: every token leased was
	// handed out.
	if got := leased.get(); got != 10 {
		t.Errorf("leased = %v tokens, want the 10 allowed", got)
	}
	n := leases.get()
	if n < 1 {
		t.Errorf("leases = %v, want at least one", n)
	}
	trips := calls.n.Load()
	if r := allow(t, l, "b1", PerSecond(1, 10), 1); r.Allowed != 0 {
		t.Fatalf("after the burst: %+v, want refused", r)
	}
	if got := refused.get(); got != 16 {
		t.Errorf("refused = %v after one more refusal, want 16", got)
	}
	if got := leases.get(); got != n || calls.n.Load() != trips {
		t.Errorf("a refusal before RetryAfter counted %v more leases (%d script calls)", got-n, calls.n.Load()-trips)
	}
	// A limit that admits nothing refuses without a lease, and counts it.
	if r := allow(t, l, "b2", PerSecond(0, 0), 3); r.Allowed != 0 {
		t.Fatalf("limit 0: %+v", r)
	}
	if got := refused.get(); got != 19 {
		t.Errorf("refused = %v after 3 under a zero limit, want 19", got)
	}
}
