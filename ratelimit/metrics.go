package ratelimit

// Counter is a count that only goes up. A prometheus.Counter is one; so is anything
// with this method. The package needs nothing more of a metrics library.
type Counter interface{ Add(float64) }

// Metrics are where a Limiter counts what it does, for a gateway's metrics. A nil field
// counts nothing. The counters are added to outside the Limiter's locks, and only on
// a lease or a refusal: the hot path (Allow served from leased tokens) adds to none.
type Metrics struct {
	// Leases counts lease round trips to Redis that asked for tokens, whatever the
	// answer (those that only give tokens back are not counted).
	Leases Counter
	// Leased counts the tokens Redis granted.
	Leased Counter
	// Refused counts the messages Allow refused: those past the rate.
	Refused Counter
}

// WithMetrics makes the Limiter count its leases and refusals into m.
func WithMetrics(m Metrics) Option {
	return func(c *config) { c.metrics = m.orNop() }
}

// orNop fills m's nil fields with counters that count nothing, so that the Limiter
// never checks.
func (m Metrics) orNop() Metrics {
	for _, p := range []*Counter{&m.Leases, &m.Leased, &m.Refused} {
		if *p == nil {
			*p = nop{}
		}
	}
	return m
}

type nop struct{}

func (nop) Add(float64) {}
