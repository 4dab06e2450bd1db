package delivery

import (
	"log/slog"
	"time"
)

// Option configures a Service.
type Option func(*config)

type config struct {
	log           *slog.Logger
	now           func() time.Time
	pollInterval  time.Duration
	expirySweep   time.Duration
	qualityBucket time.Duration
	outboxSweep   time.Duration
	receiptWindow time.Duration
	approvalWait  time.Duration
	secret        []byte
	pushers       map[string]Pusher
	wakeInterval  time.Duration
	metrics       Metrics
}

func defaults() config {
	return config{
		log:           slog.New(slog.DiscardHandler),
		now:           time.Now,
		pollInterval:  5 * time.Second,
		expirySweep:   5 * time.Second,
		qualityBucket: time.Minute,
		outboxSweep:   2 * time.Second,
		receiptWindow: DefaultReceiptWindow,
		approvalWait:  DefaultApprovalWait,
		wakeInterval:  time.Minute,
		metrics:       Metrics{}.orNop(),
	}
}

// WithLogger sends the Service's logs to l: failures it recovers from by itself
// (forwarding or sweeping that will be retried, a stream falling back to polling) and,
// at debug level, what the forwarder moved. The logs name no token, phone number or
// ciphertext. Without it the Service logs nothing; a gateway passes its own logger.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithClock makes the Service read time from now instead of time.Now: it decides
// which messages have expired and stamps acknowledgements with it. Tests move it to
// expire messages without waiting. Every gateway sharing a Redis should run on the same
// clock, or one may deliver what another reported expired a moment earlier.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now != nil {
			c.now = now
		}
	}
}

// WithPollInterval sets how often a waiting Receive or StreamStatus stream looks at
// Redis without having been notified (default 5 s). Notifications come over pub/sub,
// and those published while the connection was down are lost; the poll bounds how late
// such a message is delivered. Shorter costs a Redis round trip per open stream and
// interval; tests that must prove a stream was woken by a notification set it far
// beyond their own length.
func WithPollInterval(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.pollInterval = d
		}
	}
}

// WithExpirySweep sets how often the gateway looks for messages past their expiry on
// devices that never came back for them, to report them expired (default 5 s). It
// bounds how late a business hears STATUS_EXPIRED from such a device; each sweep costs
// a pipelined read of the expiry index, and two more round trips when something
// expired. Tests shorten it to see the report without waiting.
func WithExpirySweep(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.expirySweep = d
		}
	}
}

// WithQualityBucket sets the granularity of the per-business delivered counters that a
// business's quality figure is computed from (default one minute). It must equal the
// bucket that reads them (business.QualityPolicy.Bucket), or the figure counts the
// wrong deliveries.
func WithQualityBucket(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.qualityBucket = d
		}
	}
}

// WithOutboxSweep sets how often the gateway looks for status events that a gateway
// which died before forwarding them left in recipients' outboxes (default 2 s). With
// outboxGrace it bounds how late such events reach their business; each sweep costs a
// pipelined read of the outbox index, and a flush when it finds something.
func WithOutboxSweep(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.outboxSweep = d
		}
	}
}

// DefaultReceiptWindow is how long a message some device received is kept for read
// receipts and reports when WithReceiptWindow does not say.
const DefaultReceiptWindow = 48 * time.Hour

// WithReceiptWindow sets how long a message is kept once no device has it queued any
// more and some device received it (default DefaultReceiptWindow), never past a day
// after its expiry: long enough for a late read receipt or a report of it as spam,
// both of which need to know the message. What is kept is its settled record
// (keys.Message): the business, the client message id and each device's state and
// report, about a fifth of the message in flight. A message that no device received
// (it expired, or every device refused it) goes as soon as the last device's status
// is final.
func WithReceiptWindow(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.receiptWindow = d
		}
	}
}

// DefaultApprovalWait is how long a new device of a number that has devices waits,
// unapproved and unrefused, before it becomes active, when WithApprovalWait does not
// say.
const DefaultApprovalWait = 7 * 24 * time.Hour

// WithApprovalWait sets how long a new device of a number that has devices waits for
// approval before it becomes active anyway, unless one of the number's devices refuses
// it meanwhile (default DefaultApprovalWait). It is the way back for a person who
// lost every device, and the time their devices have to notice a takeover: long
// enough for a person to see the notice, short enough to get back in.
func WithApprovalWait(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.approvalWait = d
		}
	}
}

// WithSecret sets the secret that keys the devices' key challenges (Devices.Challenge):
// the same on every gateway, so that any of them can check an answer. Without it a
// Service makes a random one, which only that Service accepts.
func WithSecret(secret []byte) Option {
	return func(c *config) {
		if len(secret) > 0 {
			c.secret = secret
		}
	}
}

// WithPush wakes devices through pushers, by push service (keys.PushWeb, PushFCM,
// PushAPNs): a device with a message waiting, a push endpoint of one of these services
// and no open Receive stream gets one contentless wake-up per interval (default a
// minute when interval is 0). Without it, no device is woken.
func WithPush(pushers map[string]Pusher, interval time.Duration) Option {
	return func(c *config) {
		c.pushers = pushers
		if interval > 0 {
			c.wakeInterval = interval
		}
	}
}
