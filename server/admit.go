package server

import (
	"context"
	"time"

	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/business"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/ratelimit"
	"google.golang.org/protobuf/types/known/durationpb"
)

// rateLimiter is the business rate limit as the Send path needs it: how many of n
// messages may go now (a prefix, in order) and, if not all, when the next may.
// It must cost no Redis round trip per message.
type rateLimiter interface {
	Allow(ctx context.Context, business string, perSecond float64, burst, n int) (allowed int, retryAfter time.Duration, err error)
}

// admit runs the Send path for validated messages of one business: its rate limit
// (local, leased), its new-recipient allowance (local, leased), then one admission
// script per recipient, pipelined. It returns one result per message, in order, and
// rateRetry > 0 when the rate limit refused some.
func (s *Server) admit(ctx context.Context, biz string, ms []message) ([]*heraldv1.Result, time.Duration, error) {
	now := s.now()
	lim, err := s.businesses.Limits(ctx, biz, now)
	if err != nil {
		return nil, 0, s.storeError(ctx, "business limits", err)
	}
	results := make([]*heraldv1.Result, len(ms))
	allowed, rateRetry := len(ms), time.Duration(0)
	if s.rate != nil {
		allowed, rateRetry, err = s.rate.Allow(ctx, biz, lim.PerSecond, lim.Burst, len(ms))
		if err != nil {
			return nil, 0, s.storeError(ctx, "rate limit", err)
		}
		for i := allowed; i < len(ms); i++ {
			results[i] = &heraldv1.Result{Outcome: heraldv1.Outcome_OUTCOME_RATE_LIMITED, RetryAfter: durationpb.New(rateRetry)}
		}
		ms = ms[:allowed]
	}
	if len(ms) == 0 {
		return results, rateRetry, nil
	}

	as := make([]blocklist.Admission, len(ms))
	var units ratelimit.Units
	if lim.DailyUnique > 0 {
		units = s.newRecipients.Take(biz, lim.DailyUnique, s.caps.NewWindow, len(ms))
	}
	for i, m := range ms {
		as[i] = s.toAdmission(biz, m, now)
		as[i].New = allowance(lim, i < len(units))
	}
	ds, err := s.admission.Admit(ctx, as)
	if err != nil {
		s.newRecipients.Return(biz, units)
		return nil, 0, s.storeError(ctx, "send", err)
	}
	s.newRecipients.Return(biz, units[min(startedNew(ds), len(units)):])

	// Messages refused only because this gateway's stock of new-recipient allowance
	// ran out get one more try with allowance leased now: a second round trip, only
	// for them, only when the stock is empty.
	var again []int
	for i, d := range ds {
		if d.Outcome == blocklist.NewRecipientLimited && as[i].New == blocklist.NewRefused {
			again = append(again, i)
		}
	}
	var newRetry time.Duration
	if len(again) > 0 {
		got, retry, err := s.newRecipients.Lease(ctx, biz, lim.DailyUnique, s.caps.NewWindow, len(again))
		if err != nil {
			return nil, 0, s.storeError(ctx, "new-recipient allowance", err)
		}
		newRetry = retry
		var redo []blocklist.Admission
		for j := range min(len(got), len(again)) {
			a := as[again[j]]
			a.New = blocklist.NewAllowed
			redo = append(redo, a)
		}
		if len(redo) > 0 {
			rds, err := s.admission.Admit(ctx, redo)
			if err != nil {
				s.newRecipients.Return(biz, got)
				return nil, 0, s.storeError(ctx, "send", err)
			}
			s.newRecipients.Return(biz, got[min(startedNew(rds), len(got)):])
			for j, d := range rds {
				ds[again[j]] = d
			}
		}
	}
	s.admitted(as, ds)
	for i, d := range ds {
		r := result(d)
		switch d.Outcome {
		case blocklist.RecipientCapped:
			r.RetryAfter = durationpb.New(d.RetryAfter)
		case blocklist.NewRecipientLimited:
			r.RetryAfter = durationpb.New(max(newRetry, time.Second))
		}
		results[i] = r
	}
	return results, rateRetry, nil
}

func allowance(l business.Limits, holdsUnit bool) blocklist.NewAllowance {
	switch {
	case l.DailyUnique <= 0:
		return blocklist.NewUnlimited
	case holdsUnit:
		return blocklist.NewAllowed
	}
	return blocklist.NewRefused
}

func startedNew(ds []blocklist.Decision) int {
	n := 0
	for _, d := range ds {
		if d.StartedNew {
			n++
		}
	}
	return n
}
