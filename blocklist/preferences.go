package blocklist

import (
	"context"
	_ "embed"
	"fmt"
	"sort"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
	"github.com/redis/go-redis/v9"
)

// Consent is a stored consent value.
type Consent string

// The consent values; the empty Consent means no choice was made.
const (
	ConsentIn  Consent = keys.ConsentIn
	ConsentOut Consent = keys.ConsentOut
)

// Evidence is how a business collected a consent.
type Evidence struct {
	Source    string
	Collected time.Time
	Reference string
}

// The consent log has two sides, each bounded on its own (approximately: Redis trims
// in whole nodes): the person's own changes (blocks, consents), which only the person
// adds to, and what businesses recorded, which no business call can push the person's
// entries out of.
const (
	consentLogLen         = 1000
	businessConsentLogLen = 256
)

// UnregisteredRecordTTL is how long what businesses record for a number without
// devices is kept (the pref hash, the business set, the business side of the consent
// log): a number that registers in that time keeps it, one that does not loses it, so
// records for numbers nobody registered do not pile up in Redis.
const UnregisteredRecordTTL = 30 * 24 * time.Hour

// Block makes every later admission from business to uid fail with Blocked. When it
// returns nil the block is durable in Redis and every admission that starts after it
// sees it: both run on the recipient's slot.
func (s *Store) Block(ctx context.Context, uid, business string, now time.Time) error {
	return s.setBlocked(ctx, uid, business, now, true)
}

// Unblock lifts a block.
func (s *Store) Unblock(ctx context.Context, uid, business string, now time.Time) error {
	return s.setBlocked(ctx, uid, business, now, false)
}

func (s *Store) setBlocked(ctx context.Context, uid, business string, now time.Time, on bool) error {
	u := keys.Recipient(uid)
	what := "unblock"
	if on {
		what = "block"
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, u.Pref(business), keys.BlockFields(on, now)...)
		p.SAdd(ctx, u.Businesses(), business)
		p.XAdd(ctx, &redis.XAddArgs{Stream: u.ConsentLog(), MaxLen: consentLogLen, Approx: true,
			Values: keys.ConsentChange{Business: business, What: what, By: keys.ConsentByUser, Time: now}.Values()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// SetConsent records the recipient's own choice for business and category c. It
// governs from then on, whatever the business recorded before or after.
func (s *Store) SetConsent(ctx context.Context, uid, business string, c Category, v Consent, now time.Time) error {
	u := keys.Recipient(uid)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, u.Pref(business), keys.OwnConsent{Consent: string(v), At: now}.Fields(string(c))...)
		p.SAdd(ctx, u.Businesses(), business)
		p.XAdd(ctx, &redis.XAddArgs{Stream: u.ConsentLog(), MaxLen: consentLogLen, Approx: true,
			Values: keys.ConsentChange{Business: business, Category: string(c), Consent: string(v),
				By: keys.ConsentByUser, Time: now}.Values()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("set consent: %w", err)
	}
	return nil
}

// Recorded is the result of RecordConsent.
type Recorded struct {
	// Outcome is Accepted, or NewRecipientLimited when the person is new to the
	// business and the call could not start one (nothing was recorded); a caller that
	// holds the call to a rate answers RateLimited itself.
	Outcome Outcome
	// StartedNew is true when the call used its new-recipient allowance.
	StartedNew bool
	// Effective is the consent that governs now.
	Effective Consent
	// Overridden is true when the recipient's own choice or block overrides what the
	// business recorded.
	Overridden bool
	// RetryAfter is how long until a retry can pass, when the caller limited the
	// call (RateLimited, NewRecipientLimited; negative when no wait helps).
	RetryAfter time.Duration
}

//go:embed record.lua
var recordSource string

var recordScript = rscript.New(keys.Lua(policySource, recordSource))

// RecordConsent stores a consent that business collected, with its evidence, on the
// business side of the consent log. It is kept and logged even when the recipient's
// own choice overrides it, so the record is complete; it governs only where the
// recipient made no choice. A person new to the business is started as by an
// admission, under a (NewRefused: nothing is recorded, the Outcome is
// NewRecipientLimited). For a number without devices, what it stores expires after
// UnregisteredRecordTTL unless the number registers first.
func (s *Store) RecordConsent(ctx context.Context, uid, business string, c Category, v Consent, ev Evidence, now time.Time,
	a NewAllowance) (Recorded, error) {
	u := keys.Recipient(uid)
	fields := keys.RecordedConsent{Consent: string(v), At: now, Source: ev.Source, Reference: ev.Reference,
		Collected: ev.Collected}.Fields(string(c))
	args := append([]any{now.UnixMilli()}, s.newArgs(a)...)
	args = append(args, string(c), business, businessConsentLogLen, UnregisteredRecordTTL.Milliseconds(), len(fields)/2)
	args = append(args, fields...)
	args = append(args, keys.ConsentChange{Business: business, Category: string(c), Consent: string(v),
		By: keys.ConsentByBusiness(ev.Source), Reference: ev.Reference, Collected: ev.Collected, Time: now}.Values()...)
	reply, err := recordScript.Run(ctx, s.rdb, []string{u.Devices(), u.PendingDevices(), u.Pref(business), u.Businesses(),
		u.BusinessConsentLog(), u.Seen(business)}, args...).Slice()
	if err != nil {
		return Recorded{}, fmt.Errorf("record consent: %w", err)
	}
	if len(reply) < 2 {
		return Recorded{}, fmt.Errorf("record consent: reply %v", reply)
	}
	if w, _ := reply[0].(string); w == "new_limited" {
		return Recorded{Outcome: NewRecipientLimited}, nil
	}
	if len(reply) != 4 {
		return Recorded{}, fmt.Errorf("record consent: reply %v", reply)
	}
	started, _ := reply[1].(int64)
	blocked, _ := reply[2].(string)
	own, _ := reply[3].(string)
	r := Recorded{Outcome: Accepted, StartedNew: started == 1, Effective: v}
	if own != "" {
		r.Effective = Consent(own)
		r.Overridden = own != string(v)
	}
	if blocked == "1" {
		r.Overridden = true
	}
	return r, nil
}

// CategoryConsent is the consent that governs one category, and where it came from.
type CategoryConsent struct {
	Category Category
	Consent  Consent
	// ByRecipient is true when the recipient set it; false when the business recorded
	// it (then Source and Reference are its evidence), or nobody did (Consent empty).
	ByRecipient bool
	At          time.Time
	Source      string
	Reference   string
}

// Preference is the recipient's relation to one business.
type Preference struct {
	Business    string
	Blocked     bool
	Consents    []CategoryConsent
	LastMessage time.Time
}

// Preferences lists every business that has messaged uid or that uid or the business
// set a preference for, ordered by business id.
func (s *Store) Preferences(ctx context.Context, uid string) ([]Preference, error) {
	u := keys.Recipient(uid)
	ids, err := s.rdb.SMembers(ctx, u.Businesses()).Result()
	if err != nil {
		return nil, fmt.Errorf("preferences: %w", err)
	}
	sort.Strings(ids)
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, b := range ids {
			cmds[i] = p.HGetAll(ctx, u.Pref(b))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("preferences: %w", err)
	}
	out := make([]Preference, len(ids))
	for i, b := range ids {
		pr, err := keys.ParsePref(cmds[i].Val())
		if err != nil {
			return nil, fmt.Errorf("preferences for %s: %w", b, err)
		}
		out[i] = Preference{Business: b, Blocked: pr.Blocked, LastMessage: pr.Last}
		for _, c := range []Category{Transactional, Marketing} {
			cc := CategoryConsent{Category: c}
			if own, ok := pr.Own[string(c)]; ok {
				cc.Consent, cc.ByRecipient, cc.At = Consent(own.Consent), true, own.At
			} else if rec, ok := pr.Recorded[string(c)]; ok {
				cc.Consent, cc.At, cc.Source, cc.Reference = Consent(rec.Consent), rec.At, rec.Source, rec.Reference
			}
			out[i].Consents = append(out[i].Consents, cc)
		}
	}
	return out, nil
}
