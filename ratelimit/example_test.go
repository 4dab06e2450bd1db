package ratelimit_test

import (
	"context"
	"fmt"

	"github.com/heraldhq/herald/ratelimit"
	"github.com/redis/go-redis/v9"
)

// A gateway runs one Limiter and asks it before sending each batch of a business's
// messages, with the business's limit as it has it cached.
func ExampleLimiter_Allow() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	limiter := ratelimit.New(rdb, ratelimit.WithReplicasHint(3)) // three gateways
	defer limiter.Close()

	lim := ratelimit.PerSecond(50, 100) // from the business record
	batch := []string{"m1", "m2", "m3"}
	r, err := limiter.Allow(context.Background(), "acme", lim, len(batch))
	if err != nil {
		fmt.Println("UNAVAILABLE:", err) // fail closed: send nothing
		return
	}
	for _, m := range batch[:r.Allowed] {
		fmt.Println("send", m)
	}
	for _, m := range batch[r.Allowed:] {
		fmt.Println("RATE_LIMITED", m, "retry after", r.RetryAfter)
	}
}
