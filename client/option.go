package client

import (
	"log/slog"
	"time"
)

// Defaults of the options.
const (
	// DefaultRetryAttempts is how many times a call is tried, in all, before its error
	// is returned.
	DefaultRetryAttempts = 4
	// DefaultRetryBackoff is the first wait after UNAVAILABLE; each further wait
	// doubles it, up to MaxBackoff.
	DefaultRetryBackoff = 200 * time.Millisecond
	// DefaultLookupTTL is how long a recipient's devices are reused for Send without
	// asking the gateway again.
	DefaultLookupTTL = 5 * time.Minute
	// MaxBackoff caps every exponential wait: between retries of a call and between
	// reconnections of a stream. A RetryInfo from the gateway may ask for longer.
	MaxBackoff = 30 * time.Second
)

// settings are the options both a Business and a Device take.
type settings struct {
	attempts int
	backoff  time.Duration
	now      func() time.Time
	log      *slog.Logger
}

func defaultSettings() settings {
	return settings{attempts: DefaultRetryAttempts, backoff: DefaultRetryBackoff, now: time.Now,
		log: slog.New(slog.DiscardHandler)}
}

// BusinessOption configures NewBusiness.
type BusinessOption interface{ applyBusiness(*Business) }

// DeviceOption configures Register and LoadDevice.
type DeviceOption interface{ applyDevice(*Device) }

// Option configures both a Business and a Device.
type Option interface {
	BusinessOption
	DeviceOption
}

type option func(*settings)

func (o option) applyBusiness(b *Business) { o(&b.settings) }
func (o option) applyDevice(d *Device)     { o(&d.settings) }

type businessOption func(*Business)

func (o businessOption) applyBusiness(b *Business) { o(b) }

// WithRetry sets how a call that failed with UNAVAILABLE (safe to repeat; see
// UnavailableError) or
// RESOURCE_EXHAUSTED (over the business's rate) is retried: attempts tries in all (1
// turns retries off), waiting backoff after the first UNAVAILABLE and twice as long
// after each next one (with jitter, at most MaxBackoff), or as long as the gateway's
// RetryInfo asks. Streams reconnect with the same backoff, without a limit on tries.
//
// Raise attempts for batch jobs that would rather wait than fail; set 1 when the
// caller has its own retry loop (a queue worker that re-enqueues), so that waits are
// not stacked.
func WithRetry(attempts int, backoff time.Duration) Option {
	return option(func(s *settings) {
		s.attempts = max(attempts, 1)
		if backoff > 0 {
			s.backoff = backoff
		}
	})
}

// WithClock replaces time.Now: the send time sealed into each message, the lookup
// cache's expiry, the age of retired keys and of replay records. Tests that move time
// want it; nobody else should.
func WithClock(now func() time.Time) Option {
	return option(func(s *settings) {
		if now != nil {
			s.now = now
		}
	})
}

// WithLogger receives the SDK's logs: retries, reconnections and deliveries it
// rejected, at Debug to Warn. By default nothing is logged. Logs never hold message
// text, keys or tokens.
func WithLogger(l *slog.Logger) Option {
	return option(func(s *settings) {
		if l != nil {
			s.log = l
		}
	})
}

// WithLookupTTL sets how long Send reuses a recipient's devices (per recipient and
// category) before looking them up again. A stale list costs one extra round trip
// when it is used (the gateway answers STALE_DEVICES and Send looks up and resends
// once); a shorter TTL costs a lookup per message. 0 turns the cache off, which suits
// a sender that messages each person rarely.
func WithLookupTTL(ttl time.Duration) BusinessOption {
	return businessOption(func(b *Business) { b.lookupTTL = max(ttl, 0) })
}

// WithCursor makes Statuses start after the event with this cursor instead of at the
// oldest retained event: pass the cursor saved from the last event handled (Cursor)
// when the process restarts.
func WithCursor(cursor string) BusinessOption {
	return businessOption(func(b *Business) { b.cursor = cursor })
}

// SendOption configures one Send or Broadcast.
type SendOption func(*sendOptions)

type sendOptions struct {
	clientMessageID string
	ttl             time.Duration
}

// WithClientMessageID sets the message's idempotency key (1 to 128 characters of
// [A-Za-z0-9._:-]) instead of a random one. Use a key derived from your own record
// ("order-1234:receipt") when the send itself may be repeated, e.g. by a job that
// crashed after sending: within 24 h the gateway returns the first result
// (Sent.Duplicate) and delivers nothing again.
func WithClientMessageID(id string) SendOption {
	return func(o *sendOptions) { o.clientMessageID = id }
}

// WithTTL drops the message if no device has acknowledged it within ttl (1 s to 30
// days; the gateway's default is 30 days). Use it for what is worthless late: a
// one-time code, "your table is ready".
func WithTTL(ttl time.Duration) SendOption {
	return func(o *sendOptions) { o.ttl = ttl }
}
