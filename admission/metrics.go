package admission

import "github.com/heraldhq/herald/ratelimit"

// Metrics are where an Admitter counts its limits' work, for a gateway's metrics. A nil
// counter counts nothing. Outcomes are not counted here: the caller sees each decision.
type Metrics struct {
	// Rate counts the business rate's leases and refusals (package ratelimit).
	Rate ratelimit.Metrics
	// AllowanceLeases counts round trips that leased new-recipient allowance: at most
	// one per Admit or Lookup, and only when someone new to the business came.
	AllowanceLeases ratelimit.Counter
	// AllowanceGranted counts the units of allowance granted, one per person asked for.
	AllowanceGranted ratelimit.Counter
	// AllowanceRefused counts the units asked for and not granted: the allowance of the
	// window was spent, and the person is NEW_RECIPIENT_LIMITED.
	AllowanceRefused ratelimit.Counter
}

// WithMetrics makes the Admitter count its leases and refusals into m.
func WithMetrics(m Metrics) Option { return func(c *config) { c.metrics = m } }

// allowanceMetrics are Metrics' allowance counters, never nil.
type allowanceMetrics struct {
	leases, granted, refused ratelimit.Counter
}

func (m Metrics) allowance() allowanceMetrics {
	or := func(c ratelimit.Counter) ratelimit.Counter {
		if c == nil {
			return nop{}
		}
		return c
	}
	return allowanceMetrics{leases: or(m.AllowanceLeases), granted: or(m.AllowanceGranted), refused: or(m.AllowanceRefused)}
}

type nop struct{}

func (nop) Add(float64) {}
