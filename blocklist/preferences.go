package blocklist

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/heraldhq/herald/internal/keys"
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

// consentLogLen bounds each recipient's consent log (approximately: Redis trims in
// whole nodes).
const consentLogLen = 1000

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
	// Effective is the consent that governs now.
	Effective Consent
	// Overridden is true when the recipient's own choice or block overrides what the
	// business recorded.
	Overridden bool
}

// RecordConsent stores a consent that business collected, with its evidence. It is
// kept and logged even when the recipient's own choice overrides it, so the record is
// complete; it governs only where the recipient made no choice.
func (s *Store) RecordConsent(ctx context.Context, uid, business string, c Category, v Consent, ev Evidence, now time.Time) (Recorded, error) {
	u := keys.Recipient(uid)
	var state *redis.SliceCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, u.Pref(business), keys.RecordedConsent{Consent: string(v), At: now, Source: ev.Source,
			Reference: ev.Reference, Collected: ev.Collected}.Fields(string(c))...)
		p.SAdd(ctx, u.Businesses(), business)
		p.XAdd(ctx, &redis.XAddArgs{Stream: u.ConsentLog(), MaxLen: consentLogLen, Approx: true,
			Values: keys.ConsentChange{Business: business, Category: string(c), Consent: string(v),
				By: keys.ConsentByBusiness(ev.Source), Reference: ev.Reference, Collected: ev.Collected, Time: now}.Values()})
		state = p.HMGet(ctx, u.Pref(business), keys.PrefBlocked, keys.PrefOwn(string(c)))
		return nil
	})
	if err != nil {
		return Recorded{}, fmt.Errorf("record consent: %w", err)
	}
	st := state.Val()
	blocked := st[0] == "1"
	own, _ := st[1].(string)
	r := Recorded{Effective: v}
	if own != "" {
		r.Effective = Consent(own)
		r.Overridden = own != string(v)
	}
	if blocked {
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
