package admission

import (
	"sync"
	"testing"

	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/business"
	"github.com/heraldhq/herald/ratelimit"
)

// count is a counter a test reads.
type count struct {
	mu sync.Mutex
	v  float64
}

func (c *count) Add(v float64) { c.mu.Lock(); c.v += v; c.mu.Unlock() }
func (c *count) get() float64  { c.mu.Lock(); defer c.mu.Unlock(); return c.v }

// TestMetricsCountAllowanceAndRate: a batch to five new people under a tier of three
// counts one allowance lease, three units granted and two refused; the business rate's
// counters are the Limiter's.
func TestMetricsCountAllowanceAndRate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, business.Limits{PerSecond: 1e6, Burst: 1e6, DailyUnique: 3})
	var leases, granted, refused, rateLeases, rateRefused count
	store := blocklist.New(f.rdb, blocklist.Caps{NewWindow: window})
	f.a = New(f.rdb, store, limitsOf{PerSecond: 1e6, Burst: 1e6, DailyUnique: 3}, WithClock(f.clock.Now),
		WithMetrics(Metrics{Rate: ratelimit.Metrics{Leases: &rateLeases, Refused: &rateRefused},
			AllowanceLeases: &leases, AllowanceGranted: &granted, AllowanceRefused: &refused}))
	t.Cleanup(f.a.Close)
	ms := make([]Message, 5)
	for i := range ms {
		ms[i] = f.person(i)
	}
	ds := f.admit(ms...)
	if got, want := outcomes(ds), "accepted accepted accepted new_recipient_limited new_recipient_limited"; got != want {
		t.Fatalf("outcomes %q, want %q", got, want)
	}
	if l, g, r := leases.get(), granted.get(), refused.get(); l != 1 || g != 3 || r != 2 {
		t.Errorf("allowance leases %v, granted %v, refused %v; want 1, 3, 2", l, g, r)
	}
	// People already started cost no lease.
	again := ms[0]
	again.ClientMessageID = "c2"
	f.admit(again)
	if l := leases.get(); l != 1 {
		t.Errorf("allowance leases %v after a known person, want still 1", l)
	}
	if l, r := rateLeases.get(), rateRefused.get(); l < 1 || r != 0 {
		t.Errorf("rate leases %v, refused %v; want at least 1 and 0", l, r)
	}
}
