package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// leaseSpan is how long a lease should last at the business's local rate: long
	// enough that a busy business costs a gateway about ten round trips a second, short
	// enough that little is stranded when it goes quiet.
	leaseSpan = 100 * time.Millisecond
	// refillQuantum: a gateway facing an empty global bucket waits until it holds this
	// much of the rate (see Limit.quantum).
	refillQuantum = 5 * time.Millisecond
	// defaultLeaseTTL is how long leased tokens stay spendable.
	defaultLeaseTTL = time.Second
	// idleLeases is how many lease lifetimes a business's local bucket is kept after its
	// last use.
	idleLeases = 10
	// sweepsPerLease is how often per lease lifetime the sweep drops expired grants:
	// leased tokens stay spendable for at most 1+1/sweepsPerLease lifetimes.
	sweepsPerLease = 8
)

// ErrClosed is returned by Allow after Close.
var ErrClosed = errors.New("ratelimit: limiter closed")

// Scripter is the part of a Redis client the Limiter needs; *redis.Client,
// *redis.ClusterClient and *redis.Ring have it.
type Scripter interface {
	Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd
	EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd
}

// Result is the answer to Allow.
type Result struct {
	// Allowed is how many of the n messages may be sent now: the first Allowed of them,
	// in order. The rest must not be sent.
	Allowed int
	// RetryAfter is zero when all n were allowed. Otherwise it is how long until the
	// next message can be allowed: a retry after it succeeds unless other traffic of
	// the same business (on any gateway) takes the tokens first; a retry well before it
	// is refused without a Redis round trip. It is negative when the limit admits
	// nothing at all (Rate 0 or Burst 0), so no wait helps.
	RetryAfter time.Duration
}

// Limiter enforces businesses' limits for one gateway process. It keeps a local bucket
// per business, fed by leases from the business's global bucket in Redis. It is safe
// for concurrent use.
type Limiter struct {
	rdb      Scripter
	now      func() time.Time
	ttl      time.Duration
	replicas int64 // the least number of gateways to assume
	id       string
	metrics  Metrics
	buckets  func(business string) (bucket, leasers string)

	businesses sync.Map // business id -> *localBucket

	closing   atomic.Bool
	mu        sync.RWMutex // orders lease starts (calls.Add) before Close's calls.Wait
	closed    bool
	calls     sync.WaitGroup
	stop      chan struct{}
	sweepDone chan struct{}
}

// New returns a Limiter on rdb. Close it when the gateway shuts down, so that the
// tokens it holds go back to Redis for the other gateways.
func New(rdb Scripter, opts ...Option) *Limiter {
	c := config{now: time.Now, leaseTTL: defaultLeaseTTL, replicas: 1, metrics: Metrics{}.orNop(), buckets: rateKeys}
	for _, o := range opts {
		o(&c)
	}
	l := &Limiter{
		rdb:       rdb,
		now:       c.now,
		ttl:       c.leaseTTL,
		replicas:  c.replicas,
		id:        gatewayID(),
		metrics:   c.metrics,
		buckets:   c.buckets,
		stop:      make(chan struct{}),
		sweepDone: make(chan struct{}),
	}
	go l.sweep()
	return l
}

// gatewayID names this Limiter in the businesses' leasers sets.
func gatewayID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Allow asks to send n messages of the business now, under lim (the caller's current
// copy of the business's limit; a changed limit takes effect on this call). It allows a
// prefix of the n, possibly all, possibly none; see Result.
//
// Usually it answers from this gateway's leased tokens without a round trip. It waits
// for Redis only when the local tokens have run out and Redis has not said it is empty
// (then the wait is one lease round trip, shared by all callers of the business on this
// gateway), honouring ctx.
//
// When Redis cannot be reached it returns the error and allows nothing (callers fail
// closed); tokens already leased keep being spent until they expire, so some Allow
// calls still succeed for about one lease lifetime. With an error, Allowed is 0 and
// nothing was consumed.
func (l *Limiter) Allow(ctx context.Context, businessID string, lim Limit, n int) (Result, error) {
	switch {
	case n <= 0:
		return Result{}, nil
	case lim.IsUnlimited():
		return Result{Allowed: n}, nil
	case lim.admitsNothing():
		l.metrics.Refused.Add(float64(n))
		return Result{RetryAfter: -1}, nil
	case l.closing.Load():
		return Result{}, ErrClosed
	}
	// The hot path: no lock, no clock, one compare-and-swap. Expired grants are dropped
	// by the sweep and by the slow path, never here.
	b := l.bucket(businessID, lim)
	if p := b.limit.Load(); *p != lim {
		b.mu.Lock()
		b.refresh(lim, l.now().UnixNano())
		b.mu.Unlock()
	}
	got, left := b.take(int64(n))
	if got < int64(n) {
		r, err := l.wait(ctx, businessID, b, lim, int64(n), got)
		if err == nil && r.Allowed < n {
			l.metrics.Refused.Add(float64(n - r.Allowed))
		}
		return r, err
	}
	// Prefetch below the low-water mark, unless a lease is in flight or Redis was
	// empty at the last one (then the slow path leases when the stock runs out).
	if left < b.lowWater.Load() && !b.refilling.Load() && b.emptyUntil.Load() == 0 {
		b.mu.Lock()
		if b.flight == nil && !b.retired {
			l.startLease(b, lim, l.now().UnixNano(), 0, false)
		}
		b.mu.Unlock()
	}
	return Result{Allowed: n}, nil
}

// wait serves what the local tokens could not: from a lease in flight, from one it
// starts, or with the time Redis said it would be empty for. got tokens are taken
// already.
func (l *Limiter) wait(ctx context.Context, businessID string, b *localBucket, lim Limit, n, got int64) (Result, error) {
	for {
		b.mu.Lock()
		if b.retired {
			// The sweeper dropped this bucket between lookup and lock: use the new one.
			b.mu.Unlock()
			b = l.bucket(businessID, lim)
			continue
		}
		now := l.now().UnixNano()
		b.refresh(lim, now)
		b.active = now
		k, _ := b.take(n - got)
		got += k
		if got == n {
			b.mu.Unlock()
			return Result{Allowed: int(n)}, nil
		}
		if until := b.emptyUntil.Load(); now < until {
			b.mu.Unlock()
			return Result{Allowed: int(got), RetryAfter: time.Duration(until - now)}, nil
		}
		c, lead := b.flight, false
		if c == nil {
			var err error
			if c, err = l.startLease(b, lim, now, n-got, false); err != nil {
				b.putBack(got, now, l.ttl)
				b.mu.Unlock()
				return Result{}, err
			}
			lead = true
		}
		b.mu.Unlock()

		select {
		case <-c.done:
		case <-ctx.Done():
			b.mu.Lock()
			if lead {
				if c.finished {
					b.putBack(c.got, now, l.ttl)
				} else {
					c.abandoned = true
				}
			}
			b.putBack(got, now, l.ttl)
			b.mu.Unlock()
			return Result{}, ctx.Err()
		}
		if c.err != nil {
			b.mu.Lock()
			b.putBack(got, now, l.ttl)
			b.mu.Unlock()
			return Result{}, c.err
		}
		if lead {
			got += c.got
		}
	}
}

// bucket returns the business's local bucket, creating it for lim.
func (l *Limiter) bucket(businessID string, lim Limit) *localBucket {
	if v, ok := l.businesses.Load(businessID); ok {
		return v.(*localBucket)
	}
	bucket, leasers := l.buckets(businessID)
	v, _ := l.businesses.LoadOrStore(businessID, newLocalBucket(bucket, leasers, lim, l.replicas))
	return v.(*localBucket)
}

// Close stops the Limiter: it waits for leases in flight, then gives every token it
// holds back to Redis (best effort, within one lease lifetime). Allow returns ErrClosed
// afterwards.
func (l *Limiter) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.closing.Store(true)
	l.mu.Unlock()
	close(l.stop)
	<-l.sweepDone
	l.calls.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), l.ttl)
	defer cancel()
	now := l.now().UnixNano()
	l.businesses.Range(func(_, v any) bool {
		b := v.(*localBucket)
		b.mu.Lock()
		left := b.clamp(0)
		b.dropped += left
		give := b.giveBack + left
		b.giveBack = 0
		lim := *b.limit.Load()
		b.mu.Unlock()
		if give > 0 && ctx.Err() == nil {
			l.eval(ctx, b.keys, l.args(lim, now, 0, 0, 0, give, false))
		}
		return true
	})
}

// sweep drops expired grants (Allow's hot path does not read the clock, so this is
// where tokens expire unless a caller takes the slow path first), gives their tokens
// back to Redis, and forgets businesses idle for idleLeases lease lifetimes.
func (l *Limiter) sweep() {
	defer close(l.sweepDone)
	t := time.NewTicker(max(l.ttl/sweepsPerLease, 5*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		now := l.now().UnixNano()
		l.businesses.Range(func(k, v any) bool {
			b := v.(*localBucket)
			b.mu.Lock()
			defer b.mu.Unlock()
			b.expire(now)
			if b.flight != nil {
				return true
			}
			if b.giveBack > 0 {
				l.startLease(b, *b.limit.Load(), now, 0, true)
				return true
			}
			if len(b.grants) == 0 && now-b.active > idleLeases*int64(l.ttl) && now >= b.emptyUntil.Load() {
				b.retired = true
				l.businesses.CompareAndDelete(k, b)
			}
			return true
		})
	}
}
