package ratelimit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// testClock is a clock the test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// scriptCalls counts the script round trips a client makes.
type scriptCalls struct{ n atomic.Int64 }

func (c *scriptCalls) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *scriptCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (c *scriptCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// gateway starts a Limiter with a Redis client of its own, as one gateway process would
// have, and counts its script round trips.
func gateway(tb testing.TB, s *redistest.Server, opts ...Option) (*Limiter, *scriptCalls) {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr})
	calls := &scriptCalls{}
	rdb.AddHook(calls)
	l := New(rdb, opts...)
	tb.Cleanup(func() { rdb.Close() })
	tb.Cleanup(l.Close) // runs first: gives tokens back while the client is open
	return l, calls
}

func allow(t testing.TB, l *Limiter, business string, lim Limit, n int) Result {
	t.Helper()
	r, err := l.Allow(context.Background(), business, lim, n)
	if err != nil {
		t.Fatalf("Allow(%s, %d): %v", business, n, err)
	}
	return r
}

func TestLimiterRetryAfterIsHonest(t *testing.T) {
	s := redistest.Start(t)
	clock := newTestClock()
	l, calls := gateway(t, s, WithClock(clock.Now))
	lim := PerSecond(10, 5)

	if r := allow(t, l, "b1", lim, 5); r.Allowed != 5 {
		t.Fatalf("the full burst: %+v, want 5 allowed", r)
	}
	r := allow(t, l, "b1", lim, 1)
	if r.Allowed != 0 || r.RetryAfter <= 0 {
		t.Fatalf("after the burst: %+v, want 0 allowed and a RetryAfter", r)
	}
	retry := r.RetryAfter
	t.Logf("RetryAfter at R=10/s with the bucket empty: %v", retry)
	if retry > time.Second/10+refillQuantum {
		t.Errorf("RetryAfter %v, more than one token's time (100ms) plus the refill quantum", retry)
	}

	trips := calls.n.Load()
	clock.Advance(retry / 2)
	if r := allow(t, l, "b1", lim, 1); r.Allowed != 0 || r.RetryAfter != retry-retry/2 {
		t.Fatalf("halfway: %+v, want 0 allowed, RetryAfter %v", r, retry-retry/2)
	}
	clock.Advance(retry - retry/2 - time.Millisecond)
	if r := allow(t, l, "b1", lim, 1); r.Allowed != 0 {
		t.Fatalf("1ms before RetryAfter: %+v, want refused", r)
	}
	if got := calls.n.Load(); got != trips {
		t.Errorf("refusals before RetryAfter cost %d round trips, want 0", got-trips)
	}
	clock.Advance(time.Millisecond)
	if r := allow(t, l, "b1", lim, 1); r.Allowed != 1 {
		t.Fatalf("at RetryAfter: %+v, want allowed", r)
	}
}

func TestLimiterBatchAdmitsAPrefix(t *testing.T) {
	s := redistest.Start(t)
	clock := newTestClock()
	l, _ := gateway(t, s, WithClock(clock.Now))
	lim := PerSecond(1, 10)

	r := allow(t, l, "b1", lim, 25)
	if r.Allowed != 10 || r.RetryAfter != time.Second {
		t.Fatalf("25 against a burst of 10: %+v, want 10 allowed, RetryAfter 1s", r)
	}
	clock.Advance(time.Second)
	r = allow(t, l, "b1", lim, 3)
	if r.Allowed != 1 || r.RetryAfter != time.Second {
		t.Fatalf("3 after one token's time: %+v, want 1 allowed, RetryAfter 1s", r)
	}
	clock.Advance(5 * time.Second)
	if r := allow(t, l, "b1", lim, 3); r.Allowed != 3 || r.RetryAfter != 0 {
		t.Fatalf("3 after five tokens' time: %+v, want all 3", r)
	}
}

// drain admits messages one at a time until refused and says how many went.
func drain(t *testing.T, l *Limiter, business string, lim Limit) int {
	t.Helper()
	n := 0
	for {
		r := allow(t, l, business, lim, 1)
		if r.Allowed == 0 {
			return n
		}
		n++
	}
}

func TestLimiterLimitChangeTakesEffect(t *testing.T) {
	s := redistest.Start(t)
	clock := newTestClock()
	l, _ := gateway(t, s, WithClock(clock.Now))
	high, low := PerSecond(1000, 100), PerSecond(2, 2)

	// A busy business builds up a local stock under the high limit.
	for range 100 {
		allow(t, l, "b1", high, 5)
		clock.Advance(5 * time.Millisecond)
	}

	// Lowered: at once, no more than the new burst and the new capacity L, twice: the
	// stock is cut to L, and so is a lease in flight when it lands.
	first := drain(t, l, "b1", low)
	if limit := low.Burst + 2*int(low.capacity(1)); first > limit {
		t.Errorf("right after lowering the limit, %d admitted, want at most B + 2·L = %d", first, limit)
	}
	// And then the new rate: over 10s, R·T + L at most (the burst went above).
	total := 0
	for range 100 {
		clock.Advance(100 * time.Millisecond)
		total += drain(t, l, "b1", low)
	}
	if want := int(low.Rate*10) + int(low.capacity(1)); total > want || total < int(low.Rate*10)-1 {
		t.Errorf("10s at %v/s: %d admitted, want about %v (at most %d)", low.Rate, total, low.Rate*10, want)
	}
	t.Logf("lowered to %v/s burst %d: %d at once, then %d in 10s", low.Rate, low.Burst, first, total)

	// Raised: the cached "empty until" of the low limit does not hold it back.
	clock.Advance(50 * time.Millisecond)
	if r := allow(t, l, "b1", high, 40); r.Allowed != 40 {
		t.Fatalf("50ms after raising to 1000/s: %+v, want 40 allowed", r)
	}
}

func TestLimiterBusinessesAreIndependent(t *testing.T) {
	s := redistest.Start(t)
	a, _ := gateway(t, s)
	b, _ := gateway(t, s)
	hammered, quiet := PerSecond(100, 10), PerSecond(50, 20)

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var refused atomic.Int64
	for _, l := range []*Limiter{a, b} {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					r, err := l.Allow(ctx, "loud", hammered, 1)
					if err != nil && ctx.Err() == nil {
						t.Error(err)
						return
					}
					if r.Allowed == 0 {
						refused.Add(1)
					}
				}
			}()
		}
	}
	time.Sleep(200 * time.Millisecond) // "loud" is past its burst by now
	r, err := b.Allow(context.Background(), "calm", quiet, quiet.Burst)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if r.Allowed != quiet.Burst {
		t.Fatalf("calm business next to a hammered one: %+v, want its whole burst %d", r, quiet.Burst)
	}
	if refused.Load() == 0 {
		t.Fatal("the hammered business was never refused: the test did not hammer")
	}
}

func TestLimiterRedisDownFailsClosedAndRecovers(t *testing.T) {
	s := redistest.Start(t)
	clock := newTestClock()
	l, _ := gateway(t, s, WithClock(clock.Now))
	lim := PerSecond(1000, 100)

	allow(t, l, "b1", lim, 1) // a lease: the gateway now holds some tokens
	s.Stop()

	// What was leased may still be spent; then Allow fails, allowing nothing.
	spent := 0
	var err error
	for range 1000 {
		var r Result
		r, err = l.Allow(context.Background(), "b1", lim, 1)
		if err != nil {
			if r.Allowed != 0 {
				t.Fatalf("with an error, %d allowed", r.Allowed)
			}
			break
		}
		spent += r.Allowed
	}
	if err == nil {
		t.Fatal("Redis is down and Allow kept allowing")
	}
	if max := int(lim.capacity(1)); spent > max {
		t.Errorf("spent %d leased tokens with Redis down, want at most one gateway's capacity %d", spent, max)
	}
	t.Logf("with Redis down: %d leased tokens spent, then %v", spent, err)

	s.Restart(t) // skips on the in-process store, which cannot come back
	if r := allow(t, l, "b1", lim, 10); r.Allowed != 10 {
		t.Fatalf("after Redis came back: %+v, want 10 allowed", r)
	}
}

func TestLimiterSteadyStateCostsNoRoundTripPerMessage(t *testing.T) {
	s := redistest.Start(t)
	clock := newTestClock()
	l, calls := gateway(t, s, WithClock(clock.Now))
	lim := PerSecond(1e6, 1e5)

	const perMs, ms = 10, 2000 // 10,000 messages a second for 2 seconds
	for range ms {
		if r := allow(t, l, "b1", lim, perMs); r.Allowed != perMs {
			t.Fatalf("far under the limit: %+v", r)
		}
		clock.Advance(time.Millisecond)
	}
	perMsg := float64(calls.n.Load()) / (perMs * ms)
	t.Logf("%d round trips for %d messages: %.4f per message", calls.n.Load(), perMs*ms, perMsg)
	if perMsg > 0.01 {
		t.Errorf("%.4f round trips per message, want at most 0.01", perMsg)
	}
}

func TestLimiterGivesBackUnusedTokens(t *testing.T) {
	s := redistest.Start(t)
	clock := newTestClock()
	ttl := 200 * time.Millisecond
	a, _ := gateway(t, s, WithClock(clock.Now), WithLeaseTTL(ttl))
	b, _ := gateway(t, s, WithClock(clock.Now), WithLeaseTTL(ttl))
	c, _ := gateway(t, s, WithClock(clock.Now), WithLeaseTTL(ttl))
	lim := PerSecond(0.001, 40) // no refill to speak of: what b gets is what a gave back

	// a sends 30, leasing a stock on top, then goes quiet; c takes what is left.
	if r := allow(t, a, "b1", lim, 10); r.Allowed != 10 {
		t.Fatalf("%+v", r)
	}
	for i := range 20 {
		if r := allow(t, a, "b1", lim, 1); r.Allowed != 1 {
			t.Fatalf("message %d: %+v", i, r)
		}
	}
	waitFor(t, "a's lease in flight", func() bool { return !a.leasing("b1") })
	held := a.held("b1")
	if held == 0 {
		t.Fatal("a holds no stock: nothing to give back")
	}
	if got, want := drain(t, c, "b1", lim), lim.Burst-30-int(held); got != want {
		t.Fatalf("c got %d while a held %d, want the other %d", got, held, want)
	}

	// After a lease lifetime, a's sweep gives its stock back, and b can have it.
	clock.Advance(ttl)
	waitFor(t, "a to give its stock back", func() bool { return a.held("b1") == 0 && !a.leasing("b1") })
	if got := drain(t, b, "b1", lim); got != int(held) {
		t.Fatalf("b got %d after a's lease expired, want the %d a held", got, held)
	}
	t.Logf("a held %d unused tokens; they went back to Redis a lease lifetime later", held)
}

// waitFor polls cond until it holds (it depends on the Limiter's own goroutines).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestLimiterCloseGivesBackAndRefuses(t *testing.T) {
	s := redistest.Start(t)
	clock := newTestClock()
	a, _ := gateway(t, s, WithClock(clock.Now))
	b, _ := gateway(t, s, WithClock(clock.Now))
	lim := PerSecond(1, 40)

	for range 20 {
		allow(t, a, "b1", lim, 1)
	}
	held := a.held("b1")
	a.Close()
	if _, err := a.Allow(context.Background(), "b1", lim, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Allow after Close: %v, want ErrClosed", err)
	}
	if got, want := drain(t, b, "b1", lim), lim.Burst-20; got != want {
		t.Fatalf("after a closed holding %d, b got %d, want the %d a did not spend", held, got, want)
	}
}

func TestLimiterUnlimitedAndSuspended(t *testing.T) {
	s := redistest.Start(t)
	l, calls := gateway(t, s)
	if r := allow(t, l, "b1", Unlimited(), 1000); r.Allowed != 1000 || r.RetryAfter != 0 {
		t.Fatalf("unlimited: %+v", r)
	}
	for _, lim := range []Limit{{}, PerSecond(0, 10), PerSecond(10, 0)} {
		if r := allow(t, l, "b1", lim, 1); r.Allowed != 0 || r.RetryAfter >= 0 {
			t.Fatalf("%+v: %+v, want nothing allowed and a negative RetryAfter", lim, r)
		}
	}
	if r := allow(t, l, "b1", PerSecond(10, 10), 0); r != (Result{}) {
		t.Fatalf("n = 0: %+v", r)
	}
	if n := calls.n.Load(); n != 0 {
		t.Fatalf("%d round trips, want none", n)
	}
}

// held is how many tokens l holds for the business.
func (l *Limiter) held(businessID string) int64 {
	v, ok := l.businesses.Load(businessID)
	if !ok {
		return 0
	}
	return v.(*localBucket).tokens.Load()
}

// leasing reports whether l has a lease of the business in flight or tokens of it not
// yet given back to Redis.
func (l *Limiter) leasing(businessID string) bool {
	v, ok := l.businesses.Load(businessID)
	if !ok {
		return false
	}
	b := v.(*localBucket)
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.giveBack > 0 || b.flight != nil
}
