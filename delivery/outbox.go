package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/redis/go-redis/v9"
)

// StatusStreamLen bounds each business's status stream (approximately).
const StatusStreamLen = 1_000_000

// Status event letters, as Event.Status holds them.
const (
	StatusAccepted  = keys.StatusAccepted
	StatusDelivered = keys.StatusDelivered
	StatusRead      = keys.StatusRead
	StatusExpired   = keys.StatusExpired
	StatusFailed    = keys.StatusFailed
)

// Forwarder moves status events from recipients' outboxes to businesses' status
// streams. Scripts on a recipient's slot cannot write a business's stream (another
// slot), so they append events to the recipient's outbox in the same atomic step as
// the change they report; the forwarder then copies each to the business stream and
// only then removes it from the outbox. An event is therefore never lost, and is
// repeated only if a gateway dies between the copy and the removal.
//
// Who forwards: the gateway that caused the event is kicked at once; events a crashed
// gateway left behind go out on the recipient's next admission, ack or Receive.
type Forwarder struct {
	rdb redis.UniversalClient
	log *slog.Logger
	// qualityBucket is the granularity of the per-business delivered counters that
	// the quality figure is computed from (see WithQualityBucket).
	qualityBucket time.Duration

	mu      sync.Mutex
	pending map[string]struct{}
	wake    chan struct{}
}

// newForwarder returns a forwarder on rdb; run runs it.
func newForwarder(rdb redis.UniversalClient, log *slog.Logger, qualityBucket time.Duration) *Forwarder {
	return &Forwarder{rdb: rdb, log: log, qualityBucket: qualityBucket, pending: map[string]struct{}{}, wake: make(chan struct{}, 1)}
}

// Kick asks for uid's outbox to be forwarded soon. It never blocks.
func (f *Forwarder) Kick(uid string) {
	f.mu.Lock()
	f.pending[uid] = struct{}{}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// run forwards kicked outboxes until ctx ends, then makes a last attempt, of at most
// lastDrain, for what is pending, so a graceful shutdown leaves nothing behind that it
// could send.
func (f *Forwarder) run(ctx context.Context) {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			f.drain(ctx, time.Now().Add(lastDrain))
			return
		case <-f.wake:
		case <-retry.C:
		}
		f.drain(ctx, time.Time{})
	}
}

const (
	// flushTimeout bounds one flush when Redis stalls.
	flushTimeout = 5 * time.Second
	// lastDrain bounds the last drain of a stopping gateway.
	lastDrain = 5 * time.Second
)

// drain flushes pending outboxes until none is left or, when until is set, until then.
// A flush is never cut by ctx, only by its own deadline: cut between its copy and its
// removal, it would leave its events to be copied again.
func (f *Forwarder) drain(ctx context.Context, until time.Time) {
	for until.IsZero() || time.Now().Before(until) {
		f.mu.Lock()
		if len(f.pending) == 0 {
			f.mu.Unlock()
			return
		}
		uids := make([]string, 0, min(len(f.pending), 256))
		for u := range f.pending {
			uids = append(uids, u)
			delete(f.pending, u)
			if len(uids) == cap(uids) {
				break
			}
		}
		f.mu.Unlock()
		work, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		err := f.flush(work, uids)
		cancel()
		if err != nil {
			// Put them back for the retry tick; the events are safe in the outboxes.
			f.mu.Lock()
			for _, u := range uids {
				f.pending[u] = struct{}{}
			}
			f.mu.Unlock()
			f.log.Warn("forwarding status events failed; will retry", "err", err)
			return
		}
		if until.IsZero() && ctx.Err() != nil {
			return // stopping: run makes the last, bounded drain
		}
	}
}

// outboxBatch is how many events one flush takes from one outbox.
const outboxBatch = 500

// flush forwards the outboxes of uids now: three pipelined round trips however many
// recipients (read, copy, remove).
func (f *Forwarder) flush(ctx context.Context, uids []string) error {
	reads := make([]*redis.StringSliceCmd, len(uids))
	if _, err := f.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, u := range uids {
			reads[i] = p.LRange(ctx, keys.Recipient(u).Outbox(), 0, outboxBatch-1)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("read outboxes: %w", err)
	}
	type item struct {
		uid, raw string
		add      *redis.StringCmd
	}
	var items []item
	more := false
	touched := map[string]bool{}
	_, err := f.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, u := range uids {
			evs := reads[i].Val()
			more = more || len(evs) == outboxBatch
			for _, raw := range evs {
				e, err := keys.ParseEvent(raw)
				if err != nil {
					f.log.Error("dropping malformed outbox entry", "err", err)
					p.LRem(ctx, keys.Recipient(u).Outbox(), 1, raw)
					continue
				}
				b := keys.Business(e.Business)
				add := p.XAdd(ctx, &redis.XAddArgs{Stream: b.Statuses(), MaxLen: StatusStreamLen, Approx: true,
					Values: e.StreamValues()})
				items = append(items, item{uid: u, raw: raw, add: add})
				touched[e.Business] = true
				if e.Status == StatusDelivered {
					// Repeated only if this flush is, like the event itself.
					bucket := e.Time.UnixMilli() / f.qualityBucket.Milliseconds()
					p.HIncrBy(ctx, b.Quality(), keys.QualityDelivered(bucket), 1)
				}
			}
		}
		for b := range touched {
			p.Publish(ctx, keys.Business(b).Channel(), "s")
		}
		return nil
	})
	if len(items) == 0 {
		return err
	}
	var firstErr error
	if _, err2 := f.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, it := range items {
			if it.add.Err() != nil {
				firstErr = cmp(firstErr, it.add.Err())
				continue
			}
			p.LRem(ctx, keys.Recipient(it.uid).Outbox(), 1, it.raw)
		}
		return nil
	}); err2 != nil {
		return fmt.Errorf("clear outboxes: %w", err2)
	}
	if firstErr != nil {
		return fmt.Errorf("copy status events: %w", firstErr)
	}
	f.log.Debug("forwarded status events", "events", len(items), "recipients", len(uids))
	if more {
		for _, u := range uids {
			f.Kick(u)
		}
	}
	return nil
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Event is one status event as a business reads it: the stored event (keys.Event) at
// its position in the business's stream.
type Event struct {
	// Cursor is the event's position in its business's stream.
	Cursor string
	keys.Event
}

// event is the status event e of business's stream at cursor.
func event(cursor string, e keys.Event) Event { return Event{Cursor: cursor, Event: e} }
