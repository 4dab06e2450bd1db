package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/redistest"
	"golang.org/x/time/rate"
)

// far is a limit far above what a benchmark can offer: the local stock always has
// tokens, so these measure the hot path and how rarely it leases.
var far = PerSecond(1e12, 1e11)

// BenchmarkLimiterOneBusiness: many goroutines admitting for ONE business on one
// gateway, the contended case. The local stock's designs side by side: one
// x/time/rate.Limiter (a mutex and token arithmetic), a counter under a mutex, an
// atomic counter (what localBucket uses), and the Limiter itself (an atomic counter
// plus the business lookup, clock and limit checks, and leasing from Redis).
func BenchmarkLimiterOneBusiness(b *testing.B) {
	b.Run("x-time-rate", func(b *testing.B) {
		l := rate.NewLimiter(rate.Limit(far.Rate), far.Burst)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !l.AllowN(time.Now(), 1) {
					b.Fatal("refused")
				}
			}
		})
	})
	b.Run("mutex", func(b *testing.B) {
		var mu sync.Mutex
		stock := int64(0)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				mu.Lock()
				if stock == 0 {
					stock = 1 << 20 // a lease
				}
				stock--
				mu.Unlock()
			}
		})
	})
	b.Run("atomic", func(b *testing.B) {
		bucket, leasers := rateKeys("b1")
		lb := newLocalBucket(bucket, leasers, far, 1)
		lb.tokens.Store(1 << 62)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if got, _ := lb.take(1); got != 1 {
					b.Fatal("refused")
				}
			}
		})
	})
	b.Run("Limiter", func(b *testing.B) {
		s := redistest.Start(b)
		l, calls := gateway(b, s)
		ctx := context.Background()
		allow(b, l, "b1", far, 1)
		calls.n.Store(0)
		var admitted atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			n := int64(0)
			for pb.Next() {
				r, err := l.Allow(ctx, "b1", far, 1)
				if err != nil || r.Allowed != 1 {
					b.Fatalf("%+v, %v", r, err)
				}
				n++
			}
			admitted.Add(n)
		})
		b.ReportMetric(float64(calls.n.Load())/float64(admitted.Load()), "rt/msg")
	})
}

// BenchmarkLimiterRoundTrips: lease round trips per admitted message for a business far
// under its limit, from one goroutine and from many, once the gateway has its first
// lease; it must stay under 0.01.
func BenchmarkLimiterRoundTrips(b *testing.B) {
	for _, tc := range []struct {
		name     string
		parallel bool
		batch    int
	}{
		{"serial", false, 1},
		{"serial-batch-50", false, 50},
		{"parallel", true, 1},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := redistest.Start(b)
			l, calls := gateway(b, s)
			ctx := context.Background()
			allow(b, l, "b1", far, 1) // the first lease, and Redis learning the script
			calls.n.Store(0)
			var admitted atomic.Int64
			b.ResetTimer()
			send := func() {
				r, err := l.Allow(ctx, "b1", far, tc.batch)
				if err != nil || r.Allowed != tc.batch {
					b.Fatalf("%+v, %v", r, err)
				}
				admitted.Add(int64(r.Allowed))
			}
			if tc.parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						send()
					}
				})
			} else {
				for b.Loop() {
					send()
				}
			}
			perMsg := float64(calls.n.Load()) / float64(admitted.Load())
			b.ReportMetric(perMsg, "rt/msg")
			if perMsg > 0.01 {
				b.Errorf("%.4f round trips per message, want at most 0.01", perMsg)
			}
		})
	}
}

// BenchmarkLimiterRoundTripsPaced: round trips per message when one gateway sends a
// business's messages at a steady rate far under its limit, on a clock that moves
// 1/rate per message. A lease lasts about 100 ms at the local rate, so the figure is
// about 10/rate: under 0.01 from about 1000 messages a second per gateway.
func BenchmarkLimiterRoundTripsPaced(b *testing.B) {
	for _, perSecond := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("%d/s", perSecond), func(b *testing.B) {
			s := redistest.Start(b)
			clock := newTestClock()
			l, calls := gateway(b, s, WithClock(clock.Now))
			lim := PerSecond(1e6, 1e5)
			step := time.Second / time.Duration(perSecond)
			ctx := context.Background()
			allow(b, l, "b1", lim, 1)
			calls.n.Store(0)
			admitted := 0
			for b.Loop() {
				r, err := l.Allow(ctx, "b1", lim, 1)
				if err != nil || r.Allowed != 1 {
					b.Fatalf("%+v, %v", r, err)
				}
				admitted++
				clock.Advance(step)
			}
			b.ReportMetric(float64(calls.n.Load())/float64(admitted), "rt/msg")
		})
	}
}
