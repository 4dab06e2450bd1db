package ratelimit

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/redistest"
)

// TestLimiterOverAdmissionBound is the package doc's bound, measured: several gateways
// (Limiters with clients of their own, on one Redis) hammer one business at once, some
// callers retrying at once and some after RetryAfter, with batches of 1 to 3. Over the
// run, admissions must stay within R·T + B + N·L — nothing is held when it starts, so
// in fact within R·T + B — and should come near R·T where callers asked for more.
//
// "Where callers asked for more" is counted in windows of 50 ms with a refusal in them:
// on a loaded machine the callers themselves may get no CPU for a while, and tokens
// nobody asks for are rightly not admitted. A limiter that stranded or wasted tokens
// would refuse callers while admitting less, and fail the floor all the same.
func TestLimiterOverAdmissionBound(t *testing.T) {
	const (
		replicas = 4
		callers  = 6 // per replica
		run      = 2 * time.Second
	)
	lim := PerSecond(1000, 100)
	s := redistest.Start(t)

	gateways := make([]*Limiter, replicas)
	trips := make([]*scriptCalls, replicas)
	for i := range gateways {
		gateways[i], trips[i] = gateway(t, s, WithReplicasHint(replicas))
	}

	var admitted, refusals atomic.Int64
	const window = 50 * time.Millisecond
	refusedIn := make([]atomic.Bool, 2*int(run/window)) // room for a run that overruns
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(run)
	for _, l := range gateways {
		for c := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; time.Now().Before(stop); i++ {
					n := 1 + i%3
					r, err := l.Allow(ctx, "hammered", lim, n)
					if err != nil {
						t.Error(err)
						return
					}
					admitted.Add(int64(r.Allowed))
					if r.Allowed < n {
						refusals.Add(1)
						if w := int(time.Since(start) / window); w < len(refusedIn) {
							refusedIn[w].Store(true)
						}
						if c%2 == 0 {
							time.Sleep(r.RetryAfter) // a polite client
						} else {
							runtime.Gosched() // an impatient one
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	cancel()

	T := elapsed.Seconds()
	L := max(1, lim.Burst/(2*replicas)) // the most one gateway holds (WithReplicasHint)
	rtb := lim.Rate*T + float64(lim.Burst)
	bound := rtb + float64(replicas*L)
	saturated := 0
	for i := range refusedIn {
		if refusedIn[i].Load() {
			saturated++
		}
	}
	Tsat := min(float64(saturated)*window.Seconds(), T)
	floor := 0.8 * lim.Rate * Tsat
	got := float64(admitted.Load())
	var rt int64
	for _, c := range trips {
		rt += c.n.Load()
	}
	t.Logf("R=%v/s B=%d N=%d L=%d T=%.3fs (%.3fs of it with refusals): admitted %.0f; R·T=%.0f, R·T+B=%.0f, bound R·T+B+N·L=%.0f (admitted/(R·T+B)=%.3f); "+
		"%d refusals; %d round trips (%.3f per admitted message, %.0f/s per gateway)",
		lim.Rate, lim.Burst, replicas, L, T, Tsat, got, lim.Rate*T, rtb, bound, got/rtb,
		refusals.Load(), rt, float64(rt)/got, float64(rt)/T/replicas)
	if got > bound {
		t.Errorf("admitted %.0f, over the bound R·T+B+N·L = %.0f", got, bound)
	}
	if got < floor {
		t.Errorf("admitted %.0f, under 0.8·R·T = %.0f over the %.3fs in which callers were refused: the gateways strand or waste tokens",
			got, floor, Tsat)
	}
}
