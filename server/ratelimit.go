package server

import (
	"context"
	"time"

	"github.com/heraldhq/herald/ratelimit"
)

// leasedRate is the business rate limit the gateway runs with: a global bucket per
// business in Redis, served from tokens leased in chunks (package ratelimit).
type leasedRate struct {
	l *ratelimit.Limiter
}

// Allow implements rateLimiter.
func (r leasedRate) Allow(ctx context.Context, business string, perSecond float64, burst, n int) (int, time.Duration, error) {
	res, err := r.l.Allow(ctx, business, ratelimit.PerSecond(perSecond, burst), n)
	return res.Allowed, res.RetryAfter, err
}
