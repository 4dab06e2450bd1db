package business

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
	"github.com/redis/go-redis/v9"
)

// QualityPolicy is the operator's rule for stepping a business's limits down when
// people report its messages.
type QualityPolicy struct {
	// Threshold is the report rate (reports per delivered message over Window) above
	// which the limits step down one tier.
	Threshold float64
	// Window is the rolling window of the figure; a business steps down at most once
	// per window.
	Window time.Duration
	// MinDelivered is how many deliveries the window must hold before the figure is
	// judged, so that one report on a handful of messages does not step anyone down.
	MinDelivered int
	// Bucket is the granularity of the counters (the forwarder's delivery buckets).
	Bucket time.Duration
}

// DefaultQualityPolicy is heraldd's default.
var DefaultQualityPolicy = QualityPolicy{Threshold: 0.02, Window: 7 * 24 * time.Hour, MinDelivered: 200, Bucket: time.Minute}

// Quality is a business's figure over the window.
type Quality struct {
	// Delivered and Reports are the messages delivered and reported in the window.
	Delivered, Reports int64
	// Rate is Reports/Delivered, 0 with nothing delivered; the policy steps the
	// limits down when it is above the threshold.
	Rate float64
	// LastStepDown is when the limits last stepped down, zero if they never did.
	LastStepDown time.Time
}

// uniqueTiers are the tiers of the new-recipient limit below unlimited, top first.
var uniqueTiers = []int{100_000, 10_000, 1_000}

// The floor of a step-down's rate and burst. Step-downs are automatic and repeat
// every window a business stays above the threshold, so halving alone would in time
// silence it, receipts and sign-in codes included; at one message a second (86,400 a
// day) it can still serve its customers while the operator looks into the reports, and
// going lower is the operator's decision. A floor never lifts a limit: a rate or burst
// already below it is left as it is.
const (
	rateFloor  = 1.0
	burstFloor = 1
)

// stepDown is l one tier lower. The new-recipient limit drops to the next tier below
// it; once it is at or under the lowest tier, the rate and burst halve instead, down
// to rateFloor and burstFloor. No limit ever rises, so at the floor stepDown returns
// l unchanged.
func stepDown(l Limits) Limits {
	for _, t := range uniqueTiers {
		if l.DailyUnique == 0 || l.DailyUnique > t {
			l.DailyUnique = t
			return l
		}
	}
	l.PerSecond = min(l.PerSecond, max(l.PerSecond/2, rateFloor))
	l.Burst = min(l.Burst, max(l.Burst/2, burstFloor))
	return l
}

// Quality reads the business's figure over the policy's window.
func (s *Store) Quality(ctx context.Context, id string, now time.Time, pol QualityPolicy) (Quality, error) {
	b := keys.Business(id)
	h, err := s.rdb.HGetAll(ctx, b.Quality()).Result()
	if err != nil {
		return Quality{}, fmt.Errorf("quality: %w", err)
	}
	c, err := keys.ParseQuality(h)
	if err != nil {
		return Quality{}, fmt.Errorf("quality: %w", err)
	}
	oldest := bucketOf(now.Add(-pol.Window), pol) // the newest bucket that has left the window
	var q Quality
	var stale []string
	for i, n := range c.Delivered {
		if i <= oldest {
			stale = append(stale, keys.QualityDelivered(i))
			continue
		}
		q.Delivered += n
	}
	for i, n := range c.Reported {
		if i <= oldest {
			stale = append(stale, keys.QualityReported(i))
			continue
		}
		q.Reports += n
	}
	if len(stale) > 0 {
		s.rdb.HDel(ctx, b.Quality(), stale...)
	}
	if q.Delivered > 0 {
		q.Rate = float64(q.Reports) / float64(q.Delivered)
	}
	q.LastStepDown = c.Stepped
	return q, nil
}

//go:embed stepdown.lua
var stepDownSource string

var stepDownScript = rscript.New(stepDownSource)

// Report counts a report against the business and steps its limits down a tier if
// the figure is above the policy's threshold (at most once per window). It returns
// whether it stepped down.
//
// The check and the step are one script on the business's slot, so no lock is held:
// of reports arriving together at several gateways exactly one steps down, and a
// caller that goes away leaves either the whole step or none of it. The next tier is
// worked out here from the limits as read, and the script applies it only if they are
// still what was read; if the operator changed them in between, theirs stand and a
// later report steps down from them.
func (s *Store) Report(ctx context.Context, id string, now time.Time, pol QualityPolicy) (bool, error) {
	b := keys.Business(id)
	var rec *redis.MapStringStringCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HIncrBy(ctx, b.Quality(), keys.QualityReported(bucketOf(now, pol)), 1)
		rec = p.HGetAll(ctx, b.Record())
		return nil
	}); err != nil {
		return false, fmt.Errorf("report: %w", err)
	}
	h := rec.Val()
	r, err := keys.ParseBusiness(h)
	if err != nil {
		return false, fmt.Errorf("report: %w", err)
	}
	if r.DisplayName == "" {
		return false, ErrNotFound
	}
	cur := limitsOf(r)
	next := stepDown(cur)
	if next == cur {
		return false, nil // as low as a step goes
	}
	// The script compares the limits as stored and writes the next ones as the codec
	// writes them: fields 1, 3 and 5 of the record's mps, burst, uniq.
	f := keys.BusinessRecord{Limits: stored(next)}.Fields()
	stepped, err := stepDownScript.Run(ctx, s.rdb, []string{b.Quality(), b.Record()},
		bucketOf(now.Add(-pol.Window), pol), now.UnixMilli(), pol.Window.Milliseconds(), pol.Threshold,
		pol.MinDelivered, h[keys.BusinessPerSecond], h[keys.BusinessBurst], h[keys.BusinessDailyUnique],
		f[1], f[3], f[5]).Int()
	if err != nil {
		return false, fmt.Errorf("report: %w", err)
	}
	if stepped != 1 {
		return false, nil
	}
	s.limits.Forget(id)
	return true, nil
}

// bucketOf is the index of the counter bucket that holds t.
func bucketOf(t time.Time, pol QualityPolicy) int64 {
	return t.UnixMilli() / pol.Bucket.Milliseconds()
}
