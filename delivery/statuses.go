package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/redis/go-redis/v9"
)

// Statuses reads businesses' status streams.
type Statuses struct {
	rdb  redis.UniversalClient
	hub  *hub
	poll time.Duration // see WithPollInterval
}

// newStatuses returns Statuses on rdb, woken by hub.
func newStatuses(rdb redis.UniversalClient, hub *hub, poll time.Duration) *Statuses {
	return &Statuses{rdb: rdb, hub: hub, poll: poll}
}

// Stream sends the business's events after cursor ("" for the oldest kept), then new
// ones as they come, until ctx ends (it then returns nil) or send fails.
func (s *Statuses) Stream(ctx context.Context, business, cursor string, send func(Event) error) error {
	b := keys.Business(business)
	wake, stop := s.hub.Watch(ctx, b.Channel())
	defer stop()
	poll := time.NewTicker(s.poll)
	defer poll.Stop()
	if cursor == "" {
		cursor = "0-0"
	}
	for {
		res, err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{b.Statuses(), cursor}, Count: 256, Block: -1}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read statuses: %w", err)
		}
		n := 0
		for _, st := range res {
			for _, m := range st.Messages {
				n++
				cursor = m.ID
				e, err := keys.ParseStreamEvent(business, m.Values)
				if err != nil {
					continue // not an event Herald wrote: nothing true to report
				}
				if err := send(event(m.ID, e)); err != nil {
					return err
				}
			}
		}
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-poll.C:
		}
	}
}
