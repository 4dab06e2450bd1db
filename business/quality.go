package business

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/keys"
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
	Delivered, Reports int64
	Rate               float64
	LastStepDown       time.Time
}

// The tiers of the daily unique recipient limit, top first; 0 is unlimited.
var uniqueTiers = []int{0, 100_000, 10_000, 1_000}

// stepDown is l one tier lower: the new-recipient limit drops a tier; at the lowest
// tier the rate halves instead (not below 1 per second).
func stepDown(l Limits) Limits {
	for i, t := range uniqueTiers[:len(uniqueTiers)-1] {
		if l.DailyUnique == t || (t > 0 && l.DailyUnique > uniqueTiers[i+1]) {
			l.DailyUnique = uniqueTiers[i+1]
			return l
		}
	}
	l.PerSecond = max(l.PerSecond/2, 1)
	l.Burst = max(l.Burst/2, 1)
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
	oldest := now.Add(-pol.Window).UnixMilli() / pol.Bucket.Milliseconds()
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

// Report counts a report against the business and steps its limits down a tier if
// the figure crosses the policy's threshold (at most once per window). It returns
// whether it stepped down.
func (s *Store) Report(ctx context.Context, id string, now time.Time, pol QualityPolicy) (bool, error) {
	b := keys.Business(id)
	bucket := now.UnixMilli() / pol.Bucket.Milliseconds()
	if err := s.rdb.HIncrBy(ctx, b.Quality(), keys.QualityReported(bucket), 1).Err(); err != nil {
		return false, fmt.Errorf("report: %w", err)
	}
	q, err := s.Quality(ctx, id, now, pol)
	if err != nil {
		return false, err
	}
	if q.Delivered < int64(pol.MinDelivered) || q.Rate <= pol.Threshold ||
		(!q.LastStepDown.IsZero() && now.Sub(q.LastStepDown) < pol.Window) {
		return false, nil
	}
	// Only one gateway steps down for one crossing.
	ok, err := s.rdb.HSetNX(ctx, b.Quality(), "stepping", now.UnixMilli()).Result()
	if err != nil || !ok {
		return false, err
	}
	defer s.rdb.HDel(ctx, b.Quality(), "stepping")
	cur, err := s.Get(ctx, id)
	if err != nil {
		return false, err
	}
	if err := s.SetLimits(ctx, id, stepDown(cur.Limits)); err != nil {
		return false, err
	}
	if err := s.rdb.HSet(ctx, b.Quality(), "stepped", now.UnixMilli()).Err(); err != nil {
		return false, fmt.Errorf("report: %w", err)
	}
	return true, nil
}
