// Package blocklist is the recipient's side of Herald: blocks, consent with its
// evidence, and the admission script that decides, for each message, whether the
// recipient allows it, and if so appends it to every device mailbox in the same atomic
// step.
//
// Guarantees:
//   - The decision and the append are one Lua script on the recipient's slot
//     (admit.lua): a Block or an opt-out acknowledged to the recipient is seen by every
//     admission that starts after it, on any gateway.
//   - Policy lives in that script only; LookupRecipient asks the same script in its
//     read-only mode, so the two can never disagree.
//   - A recipient's own choice beats what a business recorded; a business's record
//     applies only where the recipient made none.
//   - Admitting a batch costs one round trip: its recipients' calls are pipelined.
package blocklist

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
	"github.com/redis/go-redis/v9"
)

//go:embed admit.lua
var admitSource string

var admitScript = redis.NewScript(admitSource)

// IdempotencyWindow is how long a client message id is remembered per business and
// recipient.
const IdempotencyWindow = 24 * time.Hour

// Category is a message category as stored in Redis.
type Category string

// The categories.
const (
	Transactional Category = "t"
	Marketing     Category = "m"
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
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Envelope is a message's ciphertext for one device.
type Envelope struct {
	DeviceID   string
	Ciphertext []byte
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
}

// Decision is what happened to one Admission.
type Decision struct {
	Outcome Outcome
	// MessageID is the admitted message's id (Accepted only).
	MessageID string
	// Duplicate is true when the message was admitted before under the same client
	// message id; nothing was appended again.
	Duplicate bool
	// Missing are the recipient's devices without an envelope (StaleDevices only).
	Missing []string
	// Unknown are envelope devices the recipient does not have (StaleDevices only).
	Unknown []string
}

// Redis is the part of a Redis client the package needs.
type Redis interface {
	redis.Cmdable
}

// Store keeps the recipient's preferences and admits messages.
type Store struct {
	rdb Redis
}

// New returns a Store on rdb.
func New(rdb Redis) *Store { return &Store{rdb: rdb} }

// Admit decides every admission, in one pipelined round trip, and appends the admitted
// ones to their devices' mailboxes. The error is for Redis failing, in which case
// nothing can be assumed admitted and the caller must fail closed.
func (s *Store) Admit(ctx context.Context, as []Admission) ([]Decision, error) {
	calls := make([]rscript.Call, len(as))
	for i, a := range as {
		u := keys.Recipient(a.UID)
		ks := make([]string, 0, 7+len(a.Envelopes))
		ks = append(ks, u.Devices(), u.Pref(a.Business), u.Businesses(),
			u.Idempotency(a.Business, a.ClientMessageID), u.Message(a.MessageID), u.Sequence(), u.Outbox())
		args := make([]any, 0, 10+2*len(a.Envelopes))
		args = append(args, "admit", a.Business, string(a.Category), a.Kind, a.ClientMessageID, a.MessageID,
			a.Now.UnixMilli(), a.Expires.UnixMilli(), IdempotencyWindow.Milliseconds(), u.Channel())
		for _, e := range a.Envelopes {
			ks = append(ks, u.Mailbox(e.DeviceID))
			args = append(args, e.DeviceID, e.Ciphertext)
		}
		calls[i] = rscript.Call{Keys: ks, Args: args}
	}
	cmds, err := rscript.Run(ctx, s.rdb, admitScript, calls)
	if err != nil {
		return nil, fmt.Errorf("admit: %w", err)
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
	if len(reply) == 0 {
		return Decision{}, errors.New("admit: empty reply")
	}
	word, _ := reply[0].(string)
	switch word {
	case "accepted":
		return Decision{Outcome: Accepted, MessageID: reply[1].(string)}, nil
	case "duplicate":
		return Decision{Outcome: Accepted, MessageID: reply[1].(string), Duplicate: true}, nil
	case "stale":
		return Decision{Outcome: StaleDevices, Missing: strings(reply[1]), Unknown: strings(reply[2])}, nil
	case "blocked":
		return Decision{Outcome: Blocked}, nil
	case "opted_out":
		return Decision{Outcome: OptedOut}, nil
	case "not_opted_in":
		return Decision{Outcome: NotOptedIn}, nil
	case "unknown_recipient":
		return Decision{Outcome: UnknownRecipient}, nil
	}
	return Decision{}, fmt.Errorf("admit: unexpected reply %q", word)
}

func strings(v any) []string {
	xs, _ := v.([]any)
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// Check decides as Admit would for a message of category c from business to uid,
// writing nothing. When the outcome is Accepted it returns the recipient's device
// records (device id -> record) too.
func (s *Store) Check(ctx context.Context, uid, business string, c Category) (Outcome, map[string]string, error) {
	u := keys.Recipient(uid)
	reply, err := admitScript.Run(ctx, s.rdb, []string{u.Devices(), u.Pref(business)}, "check", business, string(c)).Slice()
	if err != nil {
		return 0, nil, fmt.Errorf("check: %w", err)
	}
	if w, _ := reply[0].(string); w == "ok" {
		kv := strings(reply[1])
		devs := make(map[string]string, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			devs[kv[i]] = kv[i+1]
		}
		return Accepted, devs, nil
	}
	d, err := decision(reply)
	return d.Outcome, nil, err
}
