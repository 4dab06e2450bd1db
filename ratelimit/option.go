package ratelimit

import "time"

// Option configures a Limiter.
type Option func(*config)

type config struct {
	now      func() time.Time
	leaseTTL time.Duration
	replicas int64
	metrics  Metrics
	buckets  func(business string) (bucket, leasers string)
}

// WithClock makes the Limiter read time from now instead of time.Now. Tests use it to
// step through refills without sleeping. Every gateway sharing a Redis should run on
// the same clock: the global bucket refills by the gateways' time (see the package doc
// on clock skew).
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// WithLeaseTTL sets how long leased tokens stay spendable on this gateway (default one
// second). Unspent tokens are then given back to Redis. A shorter lifetime returns
// unused tokens sooner when a business goes quiet; a longer one only matters for
// businesses whose leases take longer than that to spend. It also bounds how long a
// lease round trip may take.
func WithLeaseTTL(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.leaseTTL = d
		}
	}
}

// WithReplicasHint tells the Limiter how many gateways run against the same Redis
// (default 1). It is a floor: the Limiter also counts the gateways that leased for a
// business within the last lease lifetime and uses the larger number. Each gateway
// holds at most max(1, ⌊Burst/(2·N)⌋) tokens of a business, so with the hint set to the
// fleet size, all of them together hold at most about half the burst from the first
// lease on, instead of half the burst each until they have seen one another.
func WithReplicasHint(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.replicas = int64(n)
		}
	}
}

// WithBuckets names the Redis keys of a business's global bucket and of the gateways
// leasing from it (by default keys.Business's RateBucket and RateLeasers): a second
// Limiter with keys of its own holds businesses to a second rate, independent of the
// first, at the same cost. Both keys must carry the business's hash tag.
func WithBuckets(keys func(business string) (bucket, leasers string)) Option {
	return func(c *config) { c.buckets = keys }
}
