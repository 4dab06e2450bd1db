package delivery

// Gauge is a value set from a sample; a prometheus.Gauge is one.
type Gauge interface{ Set(float64) }

// Histogram takes observations; a prometheus.Histogram is one.
type Histogram interface{ Observe(float64) }

// Metrics are where a Service reports the depths it sees in passing, for a gateway's
// metrics. Neither costs a Redis round trip of its own: each comes back with a call
// the Service makes anyway. A nil field reports nothing.
type Metrics struct {
	// OutboxIndex is set, at each sweep of the outbox index (WithOutboxSweep), to how
	// many recipients the index holds: those with status events not yet forwarded to
	// their businesses, on every gateway together. It stays near zero unless
	// forwarding falls behind or fails.
	OutboxIndex Gauge
	// Mailbox observes, at each fetch of a Receive stream, how many deliveries the
	// device's mailbox holds: queued, not yet acknowledged (delivered but unacked ones
	// included). It grows when devices fall behind or stop acknowledging.
	Mailbox Histogram
}

// WithMetrics makes the Service report the outbox index's size and mailbox depths
// into m.
func WithMetrics(m Metrics) Option {
	return func(c *config) { c.metrics = m.orNop() }
}

func (m Metrics) orNop() Metrics {
	if m.OutboxIndex == nil {
		m.OutboxIndex = nop{}
	}
	if m.Mailbox == nil {
		m.Mailbox = nop{}
	}
	return m
}

type nop struct{}

func (nop) Set(float64)     {}
func (nop) Observe(float64) {}
