package ratelimit

import (
	"context"
	_ "embed"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
)

//go:embed lease.lua
var leaseSource string

var leaseScript = rscript.New(leaseSource)

// rateKeys are the business's global bucket and the gateways leasing from it, unless
// WithBuckets names others. Both carry the business's hash tag, so one script touches
// one slot.
func rateKeys(businessID string) (bucket, leasers string) {
	b := keys.Business(businessID)
	return b.RateBucket(), b.RateLeasers()
}

// localBucket is one business's tokens on this gateway. The hot path (Allow when the
// tokens suffice) touches only its atomics; everything else holds mu.
type localBucket struct {
	keys []string

	tokens     atomic.Int64          // leased, not yet spent; never negative
	lowWater   atomic.Int64          // prefetch when tokens fall below it
	emptyUntil atomic.Int64          // ns: Redis has less than a quantum until then
	refilling  atomic.Bool           // a lease is in flight
	limit      atomic.Pointer[Limit] // the limit the bucket is sized for

	mu       sync.Mutex
	grants   []grant    // oldest first; tokens are spent oldest first
	flight   *leaseCall // the lease in flight, or nil
	giveBack int64      // expired or excess tokens not yet given back to Redis
	replicas int64      // gateways leasing for this business, as Redis last counted
	target   int64      // tokens asked per lease
	rate     float64    // local spending rate, tokens/s
	issued   int64      // tokens Redis granted, ever
	dropped  int64      // tokens expired or clamped away, ever
	sampled  int64      // tokens spent at sampledAt
	sampleAt int64      // ns
	active   int64      // ns: last time Allow needed more than the local tokens
	retired  bool       // dropped from the Limiter's map by the sweeper
}

// grant is one lease's stock: size tokens, spendable until expires (ns).
type grant struct{ size, expires int64 }

// leaseCall is a lease round trip; done is closed when it ends.
type leaseCall struct {
	done chan struct{}
	need int64 // tokens the caller that started it is waiting for
	// Set before done is closed:
	got       int64 // tokens handed to that caller (they never enter the stock)
	err       error
	finished  bool // under the bucket's mu
	abandoned bool // under the bucket's mu: the caller left; its tokens go to the stock
}

func newLocalBucket(bucket, leasers string, lim Limit, replicas int64) *localBucket {
	b := &localBucket{keys: []string{bucket, leasers}, replicas: replicas}
	b.limit.Store(&lim)
	b.lowWater.Store(1)
	b.target = lim.quantum(replicas)
	return b
}

// take takes up to n tokens and reports how many it took and how many are left.
func (b *localBucket) take(n int64) (got, left int64) {
	for {
		c := b.tokens.Load()
		if c <= 0 {
			return 0, 0
		}
		k := min(c, n)
		if b.tokens.CompareAndSwap(c, c-k) {
			return k, c - k
		}
	}
}

// clamp lowers the tokens to at most limit and returns how many it removed.
func (b *localBucket) clamp(limit int64) int64 {
	for {
		c := b.tokens.Load()
		if c <= limit {
			return 0
		}
		if b.tokens.CompareAndSwap(c, limit) {
			return c - limit
		}
	}
}

// refresh adapts the bucket to lim and drops expired tokens. Under mu.
func (b *localBucket) refresh(lim Limit, now int64) {
	if p := b.limit.Load(); *p != lim {
		b.limit.Store(&lim)
		// Redis's "empty until" was computed under the old limit.
		b.emptyUntil.Store(0)
		// A lower limit applies at once: hold no more than the new capacity.
		capacity := lim.capacity(b.replicas)
		over := b.clamp(capacity)
		b.dropped += over
		b.giveBack += over
		b.target = min(b.target, capacity)
		b.lowWater.Store(max(1, b.target/2))
	}
	b.expire(now)
}

// expire drops the tokens of grants expired at now. Under mu.
func (b *localBucket) expire(now int64) {
	i := 0
	for i < len(b.grants) && b.grants[i].expires <= now {
		i++
	}
	if i > 0 {
		b.grants = append(b.grants[:0], b.grants[i:]...)
		var live int64
		for _, g := range b.grants {
			live += g.size
		}
		// Tokens are spent oldest first, so the ones left belong to the newest grants:
		// no more than the live grants' total may remain.
		over := b.clamp(live)
		b.dropped += over
		b.giveBack += over
	}
}

// putBack returns k tokens to the stock, spendable until now+ttl, and gives back to
// Redis what would exceed the bucket's capacity. Under mu.
func (b *localBucket) putBack(k, now int64, ttl time.Duration) {
	if k <= 0 {
		return
	}
	b.grants = append(b.grants, grant{size: k, expires: now + int64(ttl)})
	b.tokens.Add(k)
	// Forget grants spent entirely: their sizes sum to at least what was spent.
	var total int64
	for _, g := range b.grants {
		total += g.size
	}
	c := b.tokens.Load()
	for len(b.grants) > 0 && total-b.grants[0].size >= c {
		total -= b.grants[0].size
		b.grants = b.grants[1:]
	}
	over := b.clamp(b.limit.Load().capacity(b.replicas))
	b.dropped += over
	b.giveBack += over
}

// plan sizes the next lease from the local spending rate: about leaseSpan's worth, at
// least one token, at most the capacity. Under mu.
func (b *localBucket) plan(lim Limit, now, held int64) int64 {
	spent := b.issued - b.dropped - held
	if b.sampleAt != 0 {
		dt := float64(max(now-b.sampleAt, int64(time.Millisecond))) / 1e9
		sample := float64(spent-b.sampled) / dt
		if sample > b.rate {
			b.rate = sample // follow a rise at once
		} else {
			b.rate = (b.rate + sample) / 2 // and a fall within a few leases
		}
		b.target = max(1, min(int64(b.rate*leaseSpan.Seconds()), lim.capacity(b.replicas)))
	}
	b.sampled, b.sampleAt = spent, now
	b.lowWater.Store(max(1, b.target/2))
	return b.target
}

// startLease starts a lease round trip for the bucket: need tokens for the caller that
// waits on it, a lease's worth for the stock, and the tokens to give back. With
// giveOnly it only gives back. Under mu, with no lease in flight.
func (l *Limiter) startLease(b *localBucket, lim Limit, now, need int64, giveOnly bool) (*leaseCall, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	l.calls.Add(1)
	held := b.tokens.Load()
	var stock int64
	if !giveOnly {
		stock = b.plan(lim, now, held)
		b.active = now
	}
	give := b.giveBack
	b.giveBack = 0 // if the call fails they are lost: under-admission, never over
	c := &leaseCall{done: make(chan struct{}), need: need}
	b.flight = c
	b.refilling.Store(true)
	args := l.args(lim, now, need, stock, held, give, !giveOnly)
	go l.finishLease(b, c, lim, now, args, giveOnly)
	return c, nil
}

// finishLease makes the round trip and files its result.
func (l *Limiter) finishLease(b *localBucket, c *leaseCall, lim Limit, now int64, args []any, giveOnly bool) {
	defer l.calls.Done()
	ctx, cancel := context.WithTimeout(context.Background(), l.ttl)
	granted, wait, replicas, err := l.eval(ctx, b.keys, args)
	cancel()
	if !giveOnly {
		l.metrics.Leases.Add(1)
		l.metrics.Leased.Add(float64(granted))
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	defer close(c.done)
	b.flight = nil
	b.refilling.Store(false)
	c.finished = true
	if err != nil {
		c.err = err
		return
	}
	if giveOnly {
		return
	}
	b.replicas = replicas
	b.issued += granted
	forCaller := min(c.need, granted)
	if c.abandoned {
		forCaller = 0
	}
	c.got = forCaller
	b.putBack(granted-forCaller, now, l.ttl)
	if *b.limit.Load() == lim {
		if wait > 0 {
			b.emptyUntil.Store(now + int64(wait))
		} else {
			b.emptyUntil.Store(0)
		}
	}
}

// args are lease.lua's arguments.
func (l *Limiter) args(lim Limit, now, need, stock, held, give int64, lease bool) []any {
	gateway := ""
	if lease {
		gateway = l.id
	}
	us := now / 1e3
	return []any{us, lim.Rate, lim.Burst, need, stock, held, give, gateway, l.replicas,
		refillQuantum.Microseconds(), us - l.ttl.Microseconds(), (2 * l.ttl).Milliseconds()}
}

// eval runs lease.lua.
func (l *Limiter) eval(ctx context.Context, keys []string, args []any) (granted int64, wait time.Duration, replicas int64, err error) {
	r, err := leaseScript.Run(ctx, l.rdb, keys, args...).Int64Slice()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("ratelimit: lease from %s: %w", keys[0], err)
	}
	if len(r) != 3 {
		return 0, 0, 0, fmt.Errorf("ratelimit: lease from %s: unexpected reply %v", keys[0], r)
	}
	return r[0], time.Duration(r[1]) * time.Microsecond, r[2], nil
}
