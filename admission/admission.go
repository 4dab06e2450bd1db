package admission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/business"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/ratelimit"
	"github.com/redis/go-redis/v9"
)

// ErrOutcomeUnknown marks an Admit error that came after the admission scripts may
// have run: some messages may have been admitted, and a retry with the same client
// message ids is the way to learn which (a message admitted before comes back as a
// duplicate with its message id). An error without it came before anything was
// written: nothing was admitted.
var ErrOutcomeUnknown = errors.New("the outcome is unknown: messages may have been admitted")

// Limits is where admission reads a business's limits, and the bytes its messages in
// flight hold, as counted at the time returned with them, both cached by the store
// that has them (business.Store). The error is business.ErrNotFound for no such
// business.
type Limits interface {
	Limits(ctx context.Context, business string, now time.Time) (business.Limits, error)
	PendingBytes(ctx context.Context, business string, now time.Time) (int64, time.Time, error)
}

// Message is one validated message for one recipient, as the business sent it.
type Message struct {
	// UID is the recipient (keys.UID of the phone number).
	UID      string
	Category blocklist.Category
	Kind     string
	// ClientMessageID is the business's idempotency key for the message.
	ClientMessageID string
	// TTL is how long the message may wait for a device before it expires.
	TTL       time.Duration
	Envelopes []blocklist.Envelope
	// Body is the sealed body the envelopes unlock, or nil.
	Body []byte
	// SigningKeyID is the business key the message was signed with, or "".
	SigningKeyID string
}

// Admitter runs the Send path of a gateway: every admission and every lookup of a
// business goes through it. It is safe for concurrent use; Close it at shutdown.
type Admitter struct {
	recipients *blocklist.Store
	limits     Limits
	rate       *ratelimit.Limiter
	// lookups holds each business to its rate of calls that ask about a number
	// (Lookup, RecordConsent): lookupFactor times its message rate and burst.
	lookups      *ratelimit.Limiter
	lookupFactor float64
	quota        *pendingQuota
	allowance    allowance
	window       time.Duration
	now          func() time.Time
	log          *slog.Logger
	admitted     func(blocklist.Admission)
}

type config struct {
	now          func() time.Time
	replicas     int
	log          *slog.Logger
	admitted     func(blocklist.Admission)
	metrics      Metrics
	lookupFactor float64
	quota        int64
}

// Option configures an Admitter.
type Option func(*config)

// WithClock makes the Admitter read time from now instead of time.Now. Every gateway
// on one Redis must share a clock, as package ratelimit explains; tests step it.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithReplicas tells the rate limiter how many gateways share the Redis (default 1),
// which tightens its over-admission bound (see ratelimit.WithReplicasHint).
func WithReplicas(n int) Option { return func(c *config) { c.replicas = n } }

// WithLogger sets where the Admitter logs what it cannot tell a caller, such as a unit
// of allowance it failed to hand back. The default discards.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithAdmitted registers f, called after Admit for each message accepted, so that the
// gateway can start the work that follows an admission (status forwarding, expiry
// tracking) off the Send path. It is called for duplicates too, with the first
// admission's message id and expiry, so that a retry after a failure completes what
// the failed call could not; f must be idempotent, and must not block.
func WithAdmitted(f func(blocklist.Admission)) Option { return func(c *config) { c.admitted = f } }

// DefaultLookupFactor is the rate of a business's calls that ask about a number, as a
// multiple of its message rate and burst (WithLookupRate). A business's SDK looks a
// person up once per cache lifetime, not per message, so sending never meets it.
const DefaultLookupFactor = 2

// WithLookupRate sets the rate of each business's calls that ask about a number
// (Lookup, RecordConsent) to factor times its message rate and burst (default
// DefaultLookupFactor). The two rates are held apart, each across every gateway, at
// the cost of the message rate: no round trip per call in steady state.
func WithLookupRate(factor float64) Option {
	return func(c *config) {
		if factor > 0 {
			c.lookupFactor = factor
		}
	}
}

// WithPendingQuota sets how many bytes each business's messages in flight may hold
// (default DefaultPendingQuota; 0 or less: no quota). Past it a message is
// QuotaExceeded; see quota.go for how it is counted and what it bounds.
func WithPendingQuota(bytes int64) Option { return func(c *config) { c.quota = bytes } }

// New returns an Admitter that admits into recipients' mailboxes through recipients,
// under the limits that limits has for each business, with rdb holding the businesses'
// rate buckets and new-recipient allowances.
func New(rdb redis.UniversalClient, recipients *blocklist.Store, limits Limits, opts ...Option) *Admitter {
	c := config{now: time.Now, replicas: 1, log: slog.New(slog.DiscardHandler), admitted: func(blocklist.Admission) {},
		lookupFactor: DefaultLookupFactor, quota: DefaultPendingQuota}
	for _, o := range opts {
		o(&c)
	}
	return &Admitter{
		recipients: recipients,
		limits:     limits,
		rate: ratelimit.New(rdb, ratelimit.WithClock(c.now), ratelimit.WithReplicasHint(max(c.replicas, 1)),
			ratelimit.WithMetrics(c.metrics.Rate)),
		// Not counted into Metrics.Rate, which is the message rate's.
		lookups: ratelimit.New(rdb, ratelimit.WithClock(c.now), ratelimit.WithReplicasHint(max(c.replicas, 1)),
			ratelimit.WithBuckets(func(b string) (string, string) {
				k := keys.Business(b)
				return k.LookupRateBucket(), k.LookupRateLeasers()
			})),
		lookupFactor: c.lookupFactor,
		quota:        &pendingQuota{limit: max(c.quota, 0), recent: map[string][]charge{}},
		allowance:    allowance{rdb: rdb, metrics: c.metrics.allowance()},
		window:       recipients.Caps().NewWindow,
		now:          c.now,
		log:          c.log,
		admitted:     c.admitted,
	}
}

// Close gives the rate tokens this gateway holds back to the other gateways. Admit,
// Lookup and RecordConsent fail after it.
func (a *Admitter) Close() {
	a.rate.Close()
	a.lookups.Close()
}

// Admit decides every message of one business, in order, and appends the accepted ones
// to their recipients' mailboxes. It returns one decision per message:
//
//   - RateLimited for the messages past the business's rate (a suffix: the rate admits
//     a prefix, in order), with RetryAfter saying when the next can pass;
//   - QuotaExceeded for a message that would take the bytes of the business's
//     messages in flight past its quota (WithPendingQuota);
//   - otherwise what the recipient's admission script decided (blocklist.Admit), where
//     a person new to the business is NewRecipientLimited, with RetryAfter, only when
//     the business's allowance for the window is spent.
//
// The cost is one pipelined Redis round trip for the whole batch, plus two only when a
// message goes to a person new to the business (one lease of allowance for all of
// them, and their admission again): at most the tier's worth per window.
//
// An error means Redis failed (or the business does not exist: business.ErrNotFound);
// the caller fails closed.
func (a *Admitter) Admit(ctx context.Context, biz string, ms []Message) ([]blocklist.Decision, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	now := a.now()
	lim, err := a.limits.Limits(ctx, biz, now)
	if err != nil {
		return nil, fmt.Errorf("business limits: %w", err)
	}
	out := make([]blocklist.Decision, len(ms))
	r, err := a.rate.Allow(ctx, biz, ratelimit.PerSecond(lim.PerSecond, lim.Burst), len(ms))
	if err != nil {
		return nil, fmt.Errorf("rate limit: %w", err)
	}
	for i := r.Allowed; i < len(ms); i++ {
		out[i] = blocklist.Decision{Outcome: blocklist.RateLimited, RetryAfter: r.RetryAfter}
	}
	as := make([]blocklist.Admission, r.Allowed)
	for i, m := range ms[:r.Allowed] {
		as[i] = blocklist.Admission{UID: m.UID, Business: biz, Category: m.Category, Kind: m.Kind,
			ClientMessageID: m.ClientMessageID, MessageID: keys.NewMessageID(m.UID, now), Now: now,
			Expires: now.Add(m.TTL), Envelopes: m.Envelopes, Body: m.Body, SigningKeyID: m.SigningKeyID,
			New: refusedUnless(lim)}
	}
	// The quota: in order, each message that fits under it goes on (quota.go); one
	// that does not goes to its script marked so, which answers a duplicate as one (a
	// retry of a message admitted before learns its id) and refuses the rest.
	counted, read, err := a.limits.PendingBytes(ctx, biz, now)
	if err != nil {
		return nil, fmt.Errorf("business pending bytes: %w", err)
	}
	a.quota.reserve(biz, counted, read, now, as)
	ds, err := a.recipients.Admit(ctx, as)
	if err != nil {
		// Whatever the error, the scripts may have run: even a failure to connect
		// may end a call whose first try ran them, since a Redis client re-sends a
		// command whose connection broke (go-redis's MaxRetries) and returns the last
		// try's error.
		return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
	err = a.startNew(ctx, biz, lim, as, ds, now)
	// What was admitted is followed up even if starting new people failed: the
	// messages are in their mailboxes whatever the caller is told. A duplicate is
	// followed up again, since the call that admitted it may have failed before it
	// could be (and following up twice changes nothing).
	var unused int64 // reserved for admissions that were not admitted
	for i, d := range ds {
		out[i] = d
		if d.Outcome != blocklist.Accepted || d.Duplicate {
			unused += max(as[i].PendingBytes, 0)
		}
		if d.Outcome == blocklist.Accepted {
			first := as[i]
			if d.Duplicate {
				first.MessageID, first.Expires = d.MessageID, d.Expires
			}
			a.admitted(first)
		}
	}
	a.quota.release(biz, now, unused)
	if err != nil {
		// The first admissions ran: whatever failed after them, some messages may
		// have been admitted.
		return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
	return out, nil
}

// refusedUnless is what a first attempt may do about a new person: nothing, when the
// business has an allowance (units are leased only for people who turn out new), or
// anything, when it has none.
func refusedUnless(l business.Limits) blocklist.NewAllowance {
	if l.DailyUnique > 0 {
		return blocklist.NewRefused
	}
	return blocklist.NewUnlimited
}

// startNew gives the admissions refused only for want of allowance — their people are
// new to the business — units leased now, and admits them again; those it can give no
// unit stay NewRecipientLimited, with the wait until one frees up. Units the second
// attempt did not spend (another admission started the person meanwhile) go back.
func (a *Admitter) startNew(ctx context.Context, biz string, lim business.Limits, as []blocklist.Admission, ds []blocklist.Decision, now time.Time) error {
	var again []int
	for i, d := range ds {
		if d.Outcome == blocklist.NewRecipientLimited {
			again = append(again, i)
		}
	}
	if len(again) == 0 || lim.DailyUnique <= 0 {
		return nil
	}
	us, retry, err := a.allowance.lease(ctx, biz, lim.DailyUnique, a.window, len(again), now)
	if err != nil {
		return err
	}
	for _, i := range again[len(us):] {
		ds[i].RetryAfter = max(retry, time.Millisecond)
	}
	again = again[:len(us)]
	if len(again) == 0 {
		return nil
	}
	redo := make([]blocklist.Admission, len(again))
	for j, i := range again {
		redo[j] = as[i]
		redo[j].New = blocklist.NewAllowed
	}
	rds, err := a.recipients.Admit(ctx, redo)
	if err != nil {
		// The scripts may have run and started people: the units stay counted, so
		// the tier holds (a lost unit under-admits until its window passes).
		return err
	}
	unused := 0
	for j, i := range again {
		ds[i] = rds[j]
		if !rds[j].StartedNew {
			unused++
		}
	}
	a.giveBack(ctx, biz, us[:unused])
	return nil
}

// giveBack hands units back. The admissions they were leased for are decided by now,
// so a failure is not the caller's: the units count until their window passes.
func (a *Admitter) giveBack(ctx context.Context, biz string, us units) {
	if err := a.allowance.giveBack(ctx, biz, us); err != nil {
		a.log.Warn("handing back unused new-recipient allowance failed; it counts until its window passes",
			"business", biz, "units", len(us), "err", err)
	}
}

// Lookup decides on policy as Admit would for a message of category c from biz to
// uid, for LookupRecipient, and returns the recipient's devices when it would pass. A
// lookup of a person the business has not contacted in the window spends its
// new-recipient allowance like a message, since it tells whether the number is
// registered; beyond the allowance it is NewRecipientLimited and reveals nothing.
// Lookups are held to the business's lookup rate (WithLookupRate): beyond it the
// Outcome is RateLimited, with RetryAfter, and nothing is read.
func (a *Admitter) Lookup(ctx context.Context, biz, uid string, c blocklist.Category) (blocklist.Checked, error) {
	now := a.now()
	lim, err := a.limits.Limits(ctx, biz, now)
	if err != nil {
		return blocklist.Checked{}, fmt.Errorf("business limits: %w", err)
	}
	if wait, err := a.lookupRate(ctx, biz, lim); err != nil || wait != 0 {
		return blocklist.Checked{Outcome: blocklist.RateLimited, RetryAfter: wait}, err
	}
	var chk blocklist.Checked
	_, err = a.askNew(ctx, biz, lim, now, func(n blocklist.NewAllowance) (blocklist.Outcome, bool, error) {
		var err error
		chk, err = a.recipients.Check(ctx, uid, biz, c, now, n)
		return chk.Outcome, chk.StartedNew, err
	})
	return chk, err
}

// RecordConsent records a consent biz collected from uid, with its evidence
// (blocklist.Store.RecordConsent). It is held to the business's lookup rate, as
// Lookup is (RateLimited, with RetryAfter), and a person the business has not
// contacted in the window spends its new-recipient allowance like a message: beyond
// the allowance it is NewRecipientLimited, with RetryAfter, and nothing is recorded.
func (a *Admitter) RecordConsent(ctx context.Context, biz, uid string, c blocklist.Category, v blocklist.Consent,
	ev blocklist.Evidence) (blocklist.Recorded, error) {
	now := a.now()
	lim, err := a.limits.Limits(ctx, biz, now)
	if err != nil {
		return blocklist.Recorded{}, fmt.Errorf("business limits: %w", err)
	}
	if wait, err := a.lookupRate(ctx, biz, lim); err != nil || wait != 0 {
		return blocklist.Recorded{Outcome: blocklist.RateLimited, RetryAfter: wait}, err
	}
	var rec blocklist.Recorded
	wait, err := a.askNew(ctx, biz, lim, now, func(n blocklist.NewAllowance) (blocklist.Outcome, bool, error) {
		var err error
		rec, err = a.recipients.RecordConsent(ctx, uid, biz, c, v, ev, now, n)
		return rec.Outcome, rec.StartedNew, err
	})
	if rec.Outcome == blocklist.NewRecipientLimited {
		rec.RetryAfter = max(wait, time.Millisecond)
	}
	return rec, err
}

// lookupRate takes one of the business's lookup tokens: zero when it got one, else
// how long until one can be had (negative when its limits admit nothing at all).
func (a *Admitter) lookupRate(ctx context.Context, biz string, lim business.Limits) (time.Duration, error) {
	l := ratelimit.PerSecond(lim.PerSecond*a.lookupFactor, max(1, int(float64(lim.Burst)*a.lookupFactor)))
	r, err := a.lookups.Allow(ctx, biz, l, 1)
	if err != nil {
		return 0, fmt.Errorf("lookup rate: %w", err)
	}
	if r.Allowed == 1 {
		return 0, nil
	}
	if r.RetryAfter == 0 {
		return -1, nil
	}
	return r.RetryAfter, nil
}

// askNew runs ask, a call about a person that spends the business's new-recipient
// allowance as a message to them does (Lookup, RecordConsent): first without a unit;
// only when the person turns out new, again with a unit leased for them, which goes
// back unless that call started them. When no unit was left it returns how long until
// one frees up.
func (a *Admitter) askNew(ctx context.Context, biz string, lim business.Limits, now time.Time,
	ask func(blocklist.NewAllowance) (blocklist.Outcome, bool, error)) (time.Duration, error) {
	o, _, err := ask(refusedUnless(lim))
	if err != nil || o != blocklist.NewRecipientLimited || lim.DailyUnique <= 0 {
		return 0, err
	}
	us, wait, err := a.allowance.lease(ctx, biz, lim.DailyUnique, a.window, 1, now)
	if err != nil || len(us) == 0 {
		return wait, err
	}
	_, started, err := ask(blocklist.NewAllowed)
	if err != nil {
		return 0, err // the unit stays counted, as in startNew
	}
	if !started {
		a.giveBack(ctx, biz, us)
	}
	return 0, nil
}
