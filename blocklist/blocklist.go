// Package blocklist is the recipient's side of Herald: blocks, consent with its
// evidence, and the admission script that decides, for each message, whether the
// recipient allows it, and if so appends it to every device mailbox in the same atomic
// step.
//
// Guarantees:
//   - The decision and the append are one Lua script on the recipient's slot
//     (admit.lua): a Block or an opt-out acknowledged to the recipient is seen by every
//     admission that starts after it, on any gateway.
//   - Policy is one Lua function (policy.lua) that admit.lua and check.lua
//     (LookupRecipient) both run, so the two can never disagree.
//   - A recipient's own choice beats what a business recorded; a business's record
//     applies only where the recipient made none.
//   - Admitting a batch costs one round trip: its recipients' calls are pipelined.
package blocklist

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
	"github.com/redis/go-redis/v9"
)

//go:embed policy.lua
var policySource string

//go:embed admit.lua
var admitSource string

//go:embed check.lua
var checkSource string

var (
	admitScript = rscript.New(keys.Lua(policySource, admitSource))
	checkScript = rscript.New(keys.Lua(policySource, checkSource))
)

// IdempotencyWindow is how long a client message id is remembered per business and
// recipient.
const IdempotencyWindow = 24 * time.Hour

// Category is a message category as stored in Redis.
type Category string

// The categories.
const (
	Transactional Category = keys.CategoryTransactional
	Marketing     Category = keys.CategoryMarketing
)

// Outcome is the admission decision for one message.
type Outcome int

// The outcomes.
const (
	Accepted Outcome = iota + 1
	Blocked
	NotOptedIn
	OptedOut
	UnknownRecipient
	StaleDevices
	// RecipientCapped: over the recipient's marketing cap or the pair rate.
	RecipientCapped
	// NewRecipientLimited: a person new to the business, beyond its allowance.
	NewRecipientLimited
	// RateLimited: past the business's rate. Decided before the script, by the
	// business's limiter (package admission); the script never answers it.
	RateLimited
	// QuotaExceeded: the business's messages in flight hold as many bytes as its
	// quota allows. Decided before the script (package admission), which the script
	// is told (OverQuota) so that a duplicate is still answered as one.
	QuotaExceeded
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Blocked:
		return "blocked"
	case NotOptedIn:
		return "not_opted_in"
	case OptedOut:
		return "opted_out"
	case UnknownRecipient:
		return "unknown_recipient"
	case StaleDevices:
		return "stale_devices"
	case RecipientCapped:
		return "recipient_capped"
	case NewRecipientLimited:
		return "new_recipient_limited"
	case RateLimited:
		return "rate_limited"
	case QuotaExceeded:
		return "quota_exceeded"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Caps are the recipient's protections that no business limit lifts, and the window
// of the "new recipient" decision. The zero value of a field turns it off.
type Caps struct {
	// MarketingPerWindow is how many marketing messages one person may get from all
	// businesses together in MarketingWindow.
	MarketingPerWindow int
	MarketingWindow    time.Duration
	// PairInterval and PairBurst rate one business to one person, every category:
	// at most one message per PairInterval, with bursts of PairBurst.
	PairInterval time.Duration
	PairBurst    int
	// NewWindow is how long a person stays "already contacted" for a business after
	// a message or lookup: the window of the daily unique recipient limit.
	NewWindow time.Duration
}

// DefaultCaps are the recipient caps heraldd runs with unless the operator says
// otherwise.
var DefaultCaps = Caps{MarketingPerWindow: 3, MarketingWindow: 24 * time.Hour, PairInterval: 6 * time.Second,
	PairBurst: 3, NewWindow: 24 * time.Hour}

// NewAllowance says whether an admission may start a new recipient for its business.
type NewAllowance int

// The allowances.
const (
	// NewUnlimited: the business has no new-recipient limit.
	NewUnlimited NewAllowance = iota
	// NewAllowed: the caller holds one unit of the business's allowance for it.
	NewAllowed
	// NewRefused: the caller holds none; a new recipient is NewRecipientLimited.
	NewRefused
)

func (a NewAllowance) arg() string {
	switch a {
	case NewAllowed:
		return "1"
	case NewRefused:
		return "0"
	}
	return "-"
}

// Envelope is a message's ciphertext for one device.
type Envelope struct {
	DeviceID   string
	Ciphertext []byte
	// KeyID is the device key it was encrypted to; "" skips the check.
	KeyID string
}

// Admission is one message for one recipient, already validated.
type Admission struct {
	UID             string
	Business        string
	Category        Category
	Kind            string
	ClientMessageID string
	// MessageID is the id the message gets if admitted (a duplicate keeps its first).
	MessageID string
	Now       time.Time
	Expires   time.Time
	Envelopes []Envelope
	// New says whether the admission may start a new recipient.
	New NewAllowance
	// Body is the sealed body the envelopes unlock (nil when each envelope is the
	// whole message). Admit stores each distinct body once, named by its hash.
	Body []byte
	// SigningKeyID names the business key the message was signed with (e2e.KeyID), so
	// that its deliveries carry that key; "" when the business did not say.
	SigningKeyID string
	// PendingBytes is what the message counts against its business's pending bytes
	// while in flight, if admitted: its ACCEPTED event adds it to the business's
	// count, its settling takes it off. 0 counts nothing; OverQuota refuses the
	// message QuotaExceeded, unless it is a duplicate.
	PendingBytes int64
}

// OverQuota is the PendingBytes of an admission that its business's quota has no room
// for: the script answers a duplicate as one, as always, and refuses anything else
// QuotaExceeded before looking at the recipient.
const OverQuota = -1

// Decision is what happened to one Admission.
type Decision struct {
	Outcome Outcome
	// MessageID is the admitted message's id (Accepted only).
	MessageID string
	// Duplicate is true when the message was admitted before under the same client
	// message id; nothing was appended again.
	Duplicate bool
	// Expires is when the first admission expires (Duplicate only; zero when its
	// message is gone).
	Expires time.Time
	// Missing are the recipient's devices without an envelope (StaleDevices only).
	Missing []string
	// Unknown are envelope devices the recipient does not have (StaleDevices only).
	Unknown []string
	// Retired are devices whose envelope was for a key they replaced (StaleDevices).
	Retired []string
	// StartedNew is true when the admission used its new-recipient allowance (the
	// person was new to the business), whatever the outcome.
	StartedNew bool
	// RetryAfter is how long until a retry can pass: the recipient's caps
	// (RecipientCapped), the business's new-recipient allowance (NewRecipientLimited)
	// or its rate (RateLimited; negative when the rate admits nothing at all).
	RetryAfter time.Duration
}

// Redis is the part of a Redis client the package needs.
type Redis interface {
	redis.Cmdable
}

// Store keeps the recipient's preferences and admits messages.
type Store struct {
	rdb  Redis
	caps Caps
	// admits carries concurrent Admit calls to Redis together (rscript.Batcher).
	admits *rscript.Batcher
}

// Admissions share pipelines: at most admitPipelines of them out at once, each
// taking up to admitCalls queued admissions. Two out keeps Redis working on one
// while the gateway writes the next and reads the last; what queues behind them
// costs the gateway one write and one read for all. A batch of admitAlone or more
// (SendBatch) goes in a pipeline of its own at once: measured with sixteen SendBatch
// callers, queueing such batches behind two places cost a sixth of the throughput.
const (
	admitPipelines = 2
	admitCalls     = 256
	admitAlone     = 16
)

// New returns a Store on rdb that enforces caps; a zero caps.NewWindow means 24 h.
func New(rdb Redis, caps Caps) *Store {
	if caps.NewWindow <= 0 {
		caps.NewWindow = 24 * time.Hour
	}
	return &Store{rdb: rdb, caps: caps, admits: rscript.NewBatcher(rdb, admitPipelines, admitCalls, admitAlone)}
}

// Caps are the caps the Store enforces; NewWindow is the window of its "new
// recipient" decision, which the business's allowance must be counted over too.
func (s *Store) Caps() Caps { return s.caps }

// newArgs are the new-recipient arguments of admit.lua and check.lua: the allowance
// and the window.
func (s *Store) newArgs(a NewAllowance) []any {
	return []any{a.arg(), max(s.caps.NewWindow.Milliseconds(), 1)}
}

// capArgs are ARGV[10..15] of admit.lua.
func (s *Store) capArgs(a NewAllowance) []any {
	c := s.caps
	return append(s.newArgs(a), c.MarketingPerWindow, c.MarketingWindow.Milliseconds(),
		c.PairInterval.Milliseconds(), max(c.PairBurst, 1))
}

// Admit decides every admission, in one pipelined round trip (which concurrent calls
// may share), and appends the admitted ones to their devices' mailboxes. The error is
// for Redis failing, in which case nothing can be assumed admitted and the caller must
// fail closed.
func (s *Store) Admit(ctx context.Context, as []Admission) ([]Decision, error) {
	// Bodies first, in the same pipeline: a message is never admitted without its
	// body being written in the same round trip. If a body write fails the call
	// fails, and the business's retry (same client message ids: duplicates) writes it.
	// A body is stored once, named by its hash, for as long as the longest-lived
	// message naming it needs it. The writes are plain commands ahead of the
	// admissions, not a script: Redis can forget a script (SCRIPT FLUSH, a restart),
	// and a call it has to be told again runs after the rest of the pipeline, so a
	// body could land after the message that names it was announced.
	type body struct {
		data []byte
		keep int64
	}
	bodies := map[string]*body{}
	var order []string
	for _, a := range as {
		if len(a.Body) == 0 || a.PendingBytes == OverQuota {
			continue // an admission refused for the quota stores nothing
		}
		h := BodyHash(a.Body)
		keep := a.Expires.UnixMilli() + 86400000
		if b, ok := bodies[h]; ok {
			b.keep = max(b.keep, keep)
			continue
		}
		bodies[h] = &body{data: a.Body, keep: keep}
		order = append(order, h)
	}
	calls := make([]rscript.Call, 0, len(as))
	for _, a := range as {
		u := keys.Recipient(a.UID)
		ks := make([]string, 0, 9+len(a.Envelopes))
		ks = append(ks, u.Devices(), u.Pref(a.Business), u.Businesses(),
			u.Idempotency(a.Business, a.ClientMessageID), u.Message(a.MessageID), u.Sequence(), u.Outbox(),
			u.Seen(a.Business), u.MarketingLog())
		args := make([]any, 0, 18+3*len(a.Envelopes))
		args = append(args, a.Business, string(a.Category), a.Kind, a.ClientMessageID, a.MessageID,
			a.Now.UnixMilli(), a.Expires.UnixMilli(), IdempotencyWindow.Milliseconds(), u.Channel())
		args = append(args, s.capArgs(a.New)...)
		bh := ""
		if len(a.Body) > 0 && a.PendingBytes != OverQuota {
			bh = BodyHash(a.Body)
		}
		args = append(args, bh, a.SigningKeyID, a.PendingBytes)
		for _, e := range a.Envelopes {
			ks = append(ks, u.Mailbox(e.DeviceID))
			args = append(args, e.DeviceID, e.Ciphertext, e.KeyID)
		}
		calls = append(calls, rscript.Call{Keys: ks, Args: args})
	}
	var bodyCmds []*redis.Cmd
	cmds, err := s.admits.RunAfter(ctx, func(p redis.Pipeliner) {
		// The recipients go into the outbox index ahead of the scripts that may add
		// their ACCEPTED events, so that if this gateway dies before forwarding them,
		// another finds them (package delivery).
		indexed := map[string]bool{}
		for _, a := range as {
			if !indexed[a.UID] {
				indexed[a.UID] = true
				p.ZAdd(ctx, keys.OutboxIndex(a.UID), redis.Z{Score: float64(a.Now.UnixMilli()), Member: a.UID})
			}
		}
		for _, h := range order {
			b := bodies[h]
			// Stored if new; an existing body's life is only ever extended.
			bodyCmds = append(bodyCmds, p.Do(ctx, "SET", keys.Body(h), b.data, "NX", "PXAT", b.keep),
				p.Do(ctx, "PEXPIREAT", keys.Body(h), b.keep, "GT"))
		}
	}, admitScript, calls)
	if err != nil {
		return nil, fmt.Errorf("admit: %w", err)
	}
	for _, c := range bodyCmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) { // Nil: SET NX found it stored
			return nil, fmt.Errorf("store body: %w", err)
		}
	}
	out := make([]Decision, len(as))
	for i, c := range cmds {
		reply, err := c.Slice()
		if err != nil {
			return nil, fmt.Errorf("admit: %w", err)
		}
		d, err := decision(reply)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

func decision(reply []any) (Decision, error) {
	if len(reply) < 2 {
		return Decision{}, errors.New("admit: short reply")
	}
	word, _ := reply[0].(string)
	n, _ := reply[1].(int64)
	d := Decision{StartedNew: n == 1}
	switch word {
	case "accepted":
		d.Outcome, d.MessageID = Accepted, reply[2].(string)
	case "duplicate":
		d.Outcome, d.MessageID, d.Duplicate = Accepted, reply[2].(string), true
		if len(reply) > 3 {
			x, _ := reply[3].(string)
			var err error
			if d.Expires, err = keys.ParseTime(x); err != nil {
				return Decision{}, fmt.Errorf("admit: duplicate's expiry: %w", err)
			}
		}
	case "stale":
		d.Outcome, d.Missing, d.Unknown, d.Retired = StaleDevices, strs(reply[2]), strs(reply[3]), strs(reply[4])
	case "capped":
		ms, _ := reply[2].(int64)
		d.Outcome, d.RetryAfter = RecipientCapped, time.Duration(max(ms, 1))*time.Millisecond
	case "new_limited":
		d.Outcome = NewRecipientLimited
	case "quota_exceeded":
		d.Outcome = QuotaExceeded
	case "blocked":
		d.Outcome = Blocked
	case "opted_out":
		d.Outcome = OptedOut
	case "not_opted_in":
		d.Outcome = NotOptedIn
	case "unknown_recipient":
		d.Outcome = UnknownRecipient
	default:
		return Decision{}, fmt.Errorf("admit: unexpected reply %q", word)
	}
	return d, nil
}

func strs(v any) []string {
	xs, _ := v.([]any)
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// BodyHash names a sealed body: the hex SHA-256 of its bytes.
func BodyHash(body []byte) string {
	h := sha256.Sum256(body)
	return hex.EncodeToString(h[:])
}

// Check decides as Admit would on policy for a message of category c from business
// to uid, for LookupRecipient. It writes nothing but the mark that the business
// contacted a new person (which counts against its new-recipient allowance like a
// message). When the outcome is Accepted, Devices has the recipient's device records
// (device id -> record).
func (s *Store) Check(ctx context.Context, uid, business string, c Category, now time.Time, a NewAllowance) (Checked, error) {
	u := keys.Recipient(uid)
	args := append([]any{string(c), now.UnixMilli()}, s.newArgs(a)...)
	reply, err := checkScript.Run(ctx, s.rdb, []string{u.Devices(), u.Pref(business), u.Seen(business)}, args...).Slice()
	if err != nil {
		return Checked{}, fmt.Errorf("check: %w", err)
	}
	if w, _ := reply[0].(string); w == "ok" {
		kv := strs(reply[2])
		devs := make(map[string]string, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			devs[kv[i]] = kv[i+1]
		}
		n, _ := reply[1].(int64)
		return Checked{Outcome: Accepted, Devices: devs, StartedNew: n == 1}, nil
	}
	d, err := decision(reply)
	return Checked{Outcome: d.Outcome, StartedNew: d.StartedNew}, err
}

// Checked is the result of Check.
type Checked struct {
	Outcome Outcome
	// Devices are the recipient's device records, when Outcome is Accepted.
	Devices map[string]string
	// StartedNew is true when the lookup used its new-recipient allowance.
	StartedNew bool
	// RetryAfter is how long until a retry can pass, when the caller held the lookup
	// to a rate (RateLimited; negative when no wait helps).
	RetryAfter time.Duration
}
