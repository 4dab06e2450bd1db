package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/redistest"
)

func rateKey(b string) string { return "hr:{b:" + b + "}:rate" }

// TestOverAdmissionBound hammers one business through three limiters (three
// gateways) sharing one Redis and checks the written bound R·T + B + N·L.
func TestOverAdmissionBound(t *testing.T) {
	rs := redistest.Start(t)
	const (
		r      = 200.0
		burst  = 50
		n      = 3
		window = 3 * time.Second
	)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	start := time.Now()
	for range n {
		l := NewRate(rs.Client, rateKey, time.Now)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					got, retry, err := l.Allow(ctx, "hammered", r, burst, 1)
					if err != nil {
						if ctx.Err() == nil {
							t.Error(err)
						}
						return
					}
					admitted.Add(int64(got))
					if got == 0 {
						time.Sleep(min(retry, 5*time.Millisecond))
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	l := 2 * LeaseSize(r, burst)
	bound := r*elapsed.Seconds() + burst + float64(n*l)
	got := float64(admitted.Load())
	t.Logf("R=%v/s B=%d N=%d L=%d over %v: admitted %v; R·T+B = %.0f; bound R·T+B+N·L = %.0f",
		r, burst, n, l, elapsed.Round(time.Millisecond), got, r*elapsed.Seconds()+burst, bound)
	if got > bound {
		t.Fatalf("admitted %v, over the bound %.0f", got, bound)
	}
	if got < 0.8*r*window.Seconds() {
		t.Fatalf("admitted %v, far under the rate", got)
	}
}

// TestRetryAfterIsHonest drains the bucket, then checks that a retry before
// RetryAfter fails and one after it succeeds, on a clock the test moves.
func TestRetryAfterIsHonest(t *testing.T) {
	rs := redistest.Start(t)
	now := time.Now()
	clock := func() time.Time { return now }
	l := NewRate(rs.Client, rateKey, clock)
	ctx := context.Background()
	got, _, err := l.Allow(ctx, "b", 2, 4, 10)
	if err != nil || got != 4 {
		t.Fatalf("first batch took %d, %v; want the burst of 4", got, err)
	}
	got, retry, err := l.Allow(ctx, "b", 2, 4, 1)
	if err != nil || got != 0 || retry != 500*time.Millisecond {
		t.Fatalf("empty bucket: took %d, retry %v, %v; want 0 and 500ms", got, retry, err)
	}
	now = now.Add(retry - time.Millisecond)
	if got, _, _ := l.Allow(ctx, "b", 2, 4, 1); got != 0 {
		t.Fatal("a retry before RetryAfter succeeded")
	}
	now = now.Add(time.Millisecond)
	if got, _, err := l.Allow(ctx, "b", 2, 4, 1); got != 1 || err != nil {
		t.Fatalf("a retry at RetryAfter took %d, %v", got, err)
	}
}

// TestBatchTakesAPrefixAndLimitsAreSeparate: a batch larger than the bucket gets what
// is there; another business is untouched; a raised limit applies at once.
func TestBatchTakesAPrefixAndLimitsAreSeparate(t *testing.T) {
	rs := redistest.Start(t)
	now := time.Now()
	l := NewRate(rs.Client, rateKey, func() time.Time { return now })
	ctx := context.Background()
	if got, retry, _ := l.Allow(ctx, "a", 10, 30, 100); got != 30 || retry <= 0 {
		t.Fatalf("batch of 100 on a burst of 30 took %d (retry %v)", got, retry)
	}
	if got, _, _ := l.Allow(ctx, "b", 10, 30, 30); got != 30 {
		t.Fatalf("the other business took %d of 30", got)
	}
	now = now.Add(time.Second)
	if got, _, _ := l.Allow(ctx, "a", 1000, 500, 400); got < 400 {
		t.Fatalf("after raising the limit took %d of 400", got)
	}
}

// TestRedisDown fails closed and recovers.
func TestRedisDown(t *testing.T) {
	if redistest.Memory() {
		t.Skip("needs a redis-server to stop and restart")
	}
	rs := redistest.StartDurable(t)
	l := NewRate(rs.Client, rateKey, time.Now)
	ctx := context.Background()
	if _, _, err := l.Allow(ctx, "a", 1, 1, 1); err != nil {
		t.Fatal(err)
	}
	rs.Stop()
	if got, _, err := l.Allow(ctx, "a", 1, 1, 5); err == nil || got != 0 {
		t.Fatalf("with Redis down: took %d, %v; want an error", got, err)
	}
	rs.Restart(t)
	time.Sleep(1100 * time.Millisecond)
	if got, _, err := l.Allow(ctx, "a", 1, 1, 1); err != nil || got != 1 {
		t.Fatalf("after Redis came back: took %d, %v", got, err)
	}
}

// TestSweepGivesTokensBack: tokens a gateway leased but did not spend go back to
// the bucket for other gateways.
func TestSweepGivesTokensBack(t *testing.T) {
	old := LeaseTTL
	LeaseTTL = 10 * time.Millisecond
	t.Cleanup(func() { LeaseTTL = old })
	rs := redistest.Start(t)
	now := time.Now()
	clock := func() time.Time { return now }
	a, b := NewRate(rs.Client, rateKey, clock), NewRate(rs.Client, rateKey, clock)
	ctx := context.Background()
	// a takes one and, with it, a lease of LeaseSize more.
	if got, _, _ := a.Allow(ctx, "x", 400, 400, 1); got != 1 {
		t.Fatal("first token")
	}
	now = now.Add(LeaseTTL + time.Millisecond) // refills 4.4 tokens
	if err := a.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	// Without the sweep b would find 400 - 1 - 20 = 379 (+4 refilled).
	if got, _, _ := b.Allow(ctx, "x", 400, 400, 400); got < 399 {
		t.Fatalf("after a's sweep b took %d, want at least 399: a's unspent tokens were stranded", got)
	}
}
