// Package ratelimit is the business's side of Herald's limits: a global per-business
// rate (GCRA in Redis, on the business's slot) served from tokens each gateway leases in
// chunks, so the limit costs no Redis round trip per message; and each business's
// new-recipient allowance (NewRecipients), leased the same way.
//
// # The rate bound
//
// Let a business have rate R (tokens per second) and burst B, served by N gateways.
// Tokens are debited from the global bucket when a gateway leases them, so over any
// window the tokens granted are at most what GCRA allows: R·T + B over a window of
// length T. A gateway spends a leased token within LeaseTTL of its lease or gives it
// back, and holds at most L tokens at once (L = 2·LeaseSize: a lease plus a prefetch
// begun when it was half spent; LeaseSize is at most MaxLease). So the
// messages admitted in any window of length T are at most
//
//	R·T + B + N·L
//
// (tokens granted inside the window, plus those leased just before it and spent inside
// it). The test TestOverAdmissionBound measures this with real Redis and several
// limiters.
//
// Prefetches take at most half of what is left in the bucket, so leases shrink as the
// bucket drains, and an idle gateway gives unspent tokens back after LeaseTTL, so a
// quiet business does not strand tokens on idle replicas.
//
// When Redis cannot be reached, Allow fails (callers fail closed), except that tokens
// already leased may still be spent until they expire.
package ratelimit

import (
	"context"
	_ "embed"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed rate.lua
var rateSource string

var rateScript = redis.NewScript(rateSource)

// LeaseTTL is how long a gateway may keep leased tokens before giving them back.
var LeaseTTL = time.Second

// MaxLease bounds a lease (L in the bound).
const MaxLease = 1000

// LeaseSize is how many tokens a gateway prefetches for a business of rate r and
// burst b: about 50 ms of the full rate, at least 1, at most a quarter of the burst
// and MaxLease. Small against the burst, so leases never starve other gateways; big
// enough that a busy business costs ~20 lease round trips per second per gateway.
func LeaseSize(r float64, b int) int {
	return max(1, min(int(math.Ceil(r*0.05)), b/4, MaxLease))
}

// Rate serves businesses' rate limits from leased tokens. One per gateway; safe for
// concurrent use.
type Rate struct {
	rdb redis.Scripter
	key func(business string) string
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

// leaseChunk is the unspent part of one lease.
type leaseChunk struct {
	n  int
	at time.Time // when it was leased
}

// tokens is how many tokens the bucket holds.
func (b *bucket) tokens() int {
	t := 0
	for _, c := range b.held {
		t += c.n
	}
	return t
}

// take spends up to n tokens, oldest lease first, and returns how many.
func (b *bucket) take(n int) int {
	took := 0
	for took < n && len(b.held) > 0 {
		k := min(n-took, b.held[0].n)
		took += k
		b.held[0].n -= k
		if b.held[0].n == 0 {
			b.held = b.held[1:]
		}
	}
	return took
}

// expire moves tokens leased more than LeaseTTL ago to stale: spending them now could
// break the bound, so Sweep gives them back instead.
func (b *bucket) expire(now time.Time) {
	for len(b.held) > 0 && now.Sub(b.held[0].at) > LeaseTTL {
		b.stale += b.held[0].n
		b.held = b.held[1:]
	}
}

// bucket is one business's local tokens.
type bucket struct {
	mu         sync.Mutex
	held       []leaseChunk  // leased tokens not yet spent, oldest lease first
	inFlight   bool          // a lease round trip is under way
	landed     chan struct{} // closed when it lands
	emptyUntil time.Time     // Redis said empty: don't ask again before this
	stale      int           // expired tokens for Sweep to give back
	perSecond  float64
	burst      int
}

// NewRate returns a Rate on rdb; key names each business's state (it must carry the
// business's hash tag); now is the clock.
func NewRate(rdb redis.Scripter, key func(business string) string, now func() time.Time) *Rate {
	return &Rate{rdb: rdb, key: key, now: now, buckets: map[string]*bucket{}}
}

func (l *Rate) bucket(business string) *bucket {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[business]
	if b == nil {
		b = &bucket{}
		l.buckets[business] = b
	}
	return b
}

// Allow takes up to n tokens for the business at rate perSecond with burst burst. It
// returns how many it took (callers admit that many messages, in order) and, when
// fewer than n, how long until the next token: a retry after it can succeed. In the
// steady state it costs no round trip: tokens come from the local lease, refilled in
// the background before they run out.
func (l *Rate) Allow(ctx context.Context, business string, perSecond float64, burst, n int) (int, time.Duration, error) {
	b := l.bucket(business)
	lease := LeaseSize(perSecond, burst)
	took := 0
	for {
		now := l.now()
		b.mu.Lock()
		if b.perSecond != perSecond || b.burst != burst {
			// A new limit: what was leased under the old one may still be spent (it
			// was debited), but leases follow the new one from now.
			b.perSecond, b.burst = perSecond, burst
			b.emptyUntil = time.Time{}
		}
		b.expire(now)
		took += b.take(n - took)
		if took == n {
			prefetch := b.tokens() < lease && !b.inFlight && now.After(b.emptyUntil)
			if prefetch {
				b.startLease()
			}
			b.mu.Unlock()
			if prefetch {
				go l.prefetch(business, b, perSecond, burst, lease)
			}
			return n, 0, nil
		}
		if wait := b.emptyUntil.Sub(now); wait > 0 {
			b.mu.Unlock()
			return took, wait, nil
		}
		if b.inFlight {
			// Another caller is leasing for this business: wait for it rather than
			// asking Redis too (a burst of callers costs one round trip, not one each).
			landed := b.landed
			b.mu.Unlock()
			select {
			case <-landed:
				continue
			case <-ctx.Done():
				return took, 0, ctx.Err()
			}
		}
		b.startLease()
		b.mu.Unlock()

		// Ask Redis now (one round trip) for the rest, and a lease's worth more.
		need := n - took
		got, retry, err := l.lease(ctx, business, perSecond, burst, need+lease, "need")
		b.mu.Lock()
		b.endLease()
		if err != nil {
			b.mu.Unlock()
			// The tokens taken are dropped rather than put back with a new lease
			// time, which could stretch their life past LeaseTTL: Redis is down, and
			// under-admitting is safe.
			return 0, 0, err
		}
		if got > need {
			b.held = append(b.held, leaseChunk{got - need, now})
			got = need
		}
		took += got
		if took < n {
			b.emptyUntil = now.Add(retry)
			b.mu.Unlock()
			return took, max(retry, time.Millisecond), nil
		}
		b.mu.Unlock()
		return n, 0, nil
	}
}

// startLease and endLease bracket a lease round trip; callers hold b.mu.
func (b *bucket) startLease() {
	b.inFlight = true
	b.landed = make(chan struct{})
}

func (b *bucket) endLease() {
	b.inFlight = false
	close(b.landed)
}

func (l *Rate) prefetch(business string, b *bucket, perSecond float64, burst, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	got, retry, err := l.lease(ctx, business, perSecond, burst, n, "stock")
	now := l.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.endLease()
	if err != nil {
		return
	}
	if got == 0 {
		b.emptyUntil = now.Add(retry)
		return
	}
	b.held = append(b.held, leaseChunk{got, now})
}

func (l *Rate) lease(ctx context.Context, business string, perSecond float64, burst, n int, mode string) (int, time.Duration, error) {
	r, err := rateScript.Run(ctx, l.rdb, []string{l.key(business)}, l.now().UnixMilli(), 1000/perSecond, burst, n, mode).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("lease rate tokens: %w", err)
	}
	return int(r[0]), time.Duration(r[1]) * time.Millisecond, nil
}

// Sweep gives back tokens held longer than LeaseTTL, so that an idle gateway does not
// keep a business's rate from the others. Run it every LeaseTTL or so.
func (l *Rate) Sweep(ctx context.Context) error {
	now := l.now()
	type back struct {
		business  string
		n         int
		perSecond float64
		burst     int
	}
	var backs []back
	l.mu.Lock()
	for name, b := range l.buckets {
		b.mu.Lock()
		b.expire(now)
		if b.stale > 0 {
			backs = append(backs, back{name, b.stale, b.perSecond, b.burst})
			b.stale = 0
		}
		if len(b.held) == 0 && !b.inFlight && now.After(b.emptyUntil) {
			delete(l.buckets, name)
		}
		b.mu.Unlock()
	}
	l.mu.Unlock()
	for _, bk := range backs {
		if _, _, err := l.lease(ctx, bk.business, bk.perSecond, bk.burst, -bk.n, "return"); err != nil {
			return err
		}
	}
	return nil
}
