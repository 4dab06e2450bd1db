package server

import (
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/ratelimit"
	"github.com/redis/go-redis/v9"
)

// newRateLimiter is the business rate limit the gateway runs with: global GCRA state
// per business in Redis, served from local leases.
func newRateLimiter(rdb redis.UniversalClient, now func() time.Time) *ratelimit.Rate {
	return ratelimit.NewRate(rdb, func(b string) string { return keys.Business(b).Rate() }, now)
}
