package ratelimit

import "math"

// Limit is a business's rate limit: Rate messages per second sustained, and up to Burst
// at once after a quiet spell. It is a value: callers keep it with the business record
// and pass it on every Allow. The zero Limit admits nothing.
type Limit struct {
	// Rate is the sustained rate in messages per second; +Inf (see Unlimited) means no
	// limit.
	Rate float64
	// Burst is how many messages may go at once when the business has been quiet; it is
	// also the most the business can save up.
	Burst int
}

// PerSecond is a limit of r messages per second with bursts of up to burst.
func PerSecond(r float64, burst int) Limit { return Limit{Rate: r, Burst: burst} }

// Unlimited is the limit of a business that has none: Allow admits everything and never
// asks Redis.
func Unlimited() Limit { return Limit{Rate: math.Inf(1)} }

// IsUnlimited reports whether l admits everything.
func (l Limit) IsUnlimited() bool { return math.IsInf(l.Rate, 1) }

// admitsNothing reports whether l can never admit a message: no rate (zero, negative or
// NaN) or a burst below one. A business suspended by its operator has such a limit.
func (l Limit) admitsNothing() bool { return !(l.Rate > 0) || l.Burst < 1 }

// capacity is the most tokens one gateway may hold for a business of limit l when
// replicas gateways lease from it: half the burst shared among them, at least one. It is
// L in the package's bound.
func (l Limit) capacity(replicas int64) int64 {
	return max(1, int64(l.Burst)/(2*max(1, replicas)))
}

// quantum is the fewest tokens a gateway waits for when the global bucket is empty: the
// rate's worth of refillQuantum, at least one, at most capacity. Waiting for a quantum
// rather than for every single token bounds the lease round trips of a saturated
// business at one per refillQuantum per gateway, whatever its rate.
func (l Limit) quantum(replicas int64) int64 {
	return max(1, min(l.capacity(replicas), int64(l.Rate*refillQuantum.Seconds())))
}
