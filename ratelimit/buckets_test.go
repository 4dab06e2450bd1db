package ratelimit

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
)

// Two Limiters on different buckets hold a business to two rates that do not touch:
// spending one's burst leaves the other's whole, and each bucket is in its own keys.
func TestBucketsAreIndependent(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	clock := newTestClock()
	sends, _ := gateway(t, s, WithClock(clock.Now))
	lookups, _ := gateway(t, s, WithClock(clock.Now), WithBuckets(func(b string) (string, string) {
		k := keys.Business(b)
		return k.LookupRateBucket(), k.LookupRateLeasers()
	}))
	lim := PerSecond(1, 4)
	if r := allow(t, sends, "b1", lim, 5); r.Allowed != 4 {
		t.Fatalf("sends: %+v, want the burst of 4", r)
	}
	if r := allow(t, lookups, "b1", lim, 5); r.Allowed != 4 {
		t.Fatalf("lookups after the sends spent their burst: %+v, want a burst of 4 of their own", r)
	}
	for _, k := range []string{keys.Business("b1").RateBucket(), keys.Business("b1").LookupRateBucket()} {
		if s.Client.Exists(context.Background(), k).Val() != 1 {
			t.Fatalf("no bucket at %s", k)
		}
	}
}
