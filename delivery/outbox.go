package delivery

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
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
// only then removes it from the outbox. An event is therefore never lost. The copy is
// idempotent (forward.lua marks each event copied, for forwardDedupe), so an event
// copied twice — two gateways flushing one outbox at once, or a gateway that died
// between copy and removal — reaches the business once, and its delivery counts once
// in the quality figure.
//
// Who forwards: the gateway that caused the event is kicked at once. Events a gateway
// that died left behind are found in the outbox index (keys.OutboxIndex): admission,
// ack, reject and the expiry sweep add their recipient to it ahead of their script, in
// the same round trip, and every gateway sweeps the index (sweepEvery) for recipients
// indexed longer than outboxGrace ago and forwards their outboxes; a drained outbox
// leaves the index unless a newer entry came meanwhile. Fetch (EXPIRED on a device
// that is receiving) and undeliverable messages are not indexed, to keep a write off
// every fetch: their device was connected, and its next Receive, on any gateway,
// forwards what they left.
type Forwarder struct {
	rdb redis.UniversalClient
	log *slog.Logger
	now func() time.Time
	// sweepEvery is how often the outbox index is swept for events a dead gateway left.
	sweepEvery time.Duration
	// qualityBucket is the granularity of the per-business delivered counters that
	// the quality figure is computed from (see WithQualityBucket).
	qualityBucket time.Duration
	// indexSize is set to the outbox index's size at each sweep (Metrics.OutboxIndex).
	indexSize Gauge

	mu      sync.Mutex
	pending map[string]struct{}
	wake    chan struct{}
}

// newForwarder returns a forwarder on rdb; run runs it.
func newForwarder(rdb redis.UniversalClient, log *slog.Logger, now func() time.Time, qualityBucket, sweepEvery time.Duration) *Forwarder {
	return &Forwarder{rdb: rdb, log: log, now: now, qualityBucket: qualityBucket, sweepEvery: sweepEvery,
		indexSize: nop{}, pending: map[string]struct{}{}, wake: make(chan struct{}, 1)}
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
	sweep := time.NewTicker(f.sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			f.drain(ctx, time.Now().Add(lastDrain))
			return
		case <-f.wake:
			linger(ctx, forwardLinger)
		case <-retry.C:
		case <-sweep.C:
			if err := f.sweep(ctx); err != nil && ctx.Err() == nil {
				f.log.Warn("sweeping the outbox index failed; will retry", "err", err)
			}
		}
		f.drain(ctx, time.Time{})
	}
}

// forwardLinger is how long the forwarder waits after a kick before it flushes, so
// that the events of the next few milliseconds go in the same three round trips: at a
// thousand messages a second, a flush per kick cost several round trips and about
// half a millisecond of the gateway's CPU per message.
const forwardLinger = 5 * time.Millisecond

// linger waits d, or until ctx ends.
func linger(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// outboxGrace is how long a recipient stays in the outbox index before a sweep takes
// it as left behind: its own gateway forwards within milliseconds.
const outboxGrace = 2 * time.Second

// sweep forwards the outboxes of recipients indexed longer than outboxGrace ago, up to
// 256 per shard a call. It samples the index's size in the same round trip.
func (f *Forwarder) sweep(ctx context.Context) error {
	before := strconv.FormatInt(f.now().Add(-outboxGrace).UnixMilli(), 10)
	ranges := make([]*redis.StringSliceCmd, keys.OutboxShards)
	sizes := make([]*redis.IntCmd, keys.OutboxShards)
	if _, err := f.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range keys.OutboxShards {
			ranges[i] = p.ZRangeByScore(ctx, keys.OutboxIndexShard(i), &redis.ZRangeBy{Min: "-inf", Max: before, Count: 256})
			sizes[i] = p.ZCard(ctx, keys.OutboxIndexShard(i))
		}
		return nil
	}); err != nil {
		return fmt.Errorf("sweep outbox index: %w", err)
	}
	var uids []string
	var size int64
	for i, r := range ranges {
		uids = append(uids, r.Val()...)
		size += sizes[i].Val()
	}
	f.indexSize.Set(float64(size))
	if len(uids) == 0 {
		return nil
	}
	return f.flush(ctx, uids)
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
	// Each recipient's index score is read before its outbox, in the same round trip:
	// if the outbox drains, the recipient leaves the index only with that score.
	reads := make([]*redis.StringSliceCmd, len(uids))
	scores := make([]*redis.FloatCmd, len(uids))
	if _, err := f.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, u := range uids {
			scores[i] = p.ZScore(ctx, keys.OutboxIndex(u), u)
			reads[i] = p.LRange(ctx, keys.Recipient(u).Outbox(), 0, outboxBatch-1)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("read outboxes: %w", err)
	}
	for _, r := range reads {
		if r.Err() != nil {
			return fmt.Errorf("read outboxes: %w", r.Err())
		}
	}
	// The events by business, in outbox order: one forward.lua call each.
	type item struct{ uid, raw string }
	var order []string
	byBusiness := map[string][]item{}
	args := map[string][]any{}
	var malformed []item
	more := false
	for i, u := range uids {
		evs := reads[i].Val()
		more = more || len(evs) == outboxBatch
		for _, raw := range evs {
			e, err := keys.ParseEvent(raw)
			if err != nil {
				f.log.Error("dropping malformed outbox entry", "err", err)
				malformed = append(malformed, item{u, raw})
				continue
			}
			if _, ok := byBusiness[e.Business]; !ok {
				order = append(order, e.Business)
				b := keys.Business(e.Business)
				args[e.Business] = []any{StatusStreamLen, forwardDedupe.Milliseconds(), b.ForwardedPrefix(), b.Channel()}
			}
			byBusiness[e.Business] = append(byBusiness[e.Business], item{u, raw})
			quality := ""
			if e.Status == StatusDelivered {
				quality = keys.QualityDelivered(e.Time.UnixMilli() / f.qualityBucket.Milliseconds())
			}
			var vals []any
			if e.Status != keys.StatusSettled {
				vals = e.StreamValues()
			}
			args[e.Business] = append(append(args[e.Business], keys.EventID(raw), quality, e.Bytes, len(vals)), vals...)
		}
	}
	calls := make([]rscript.Call, len(order))
	for i, biz := range order {
		b := keys.Business(biz)
		calls[i] = rscript.Call{Keys: []string{b.Statuses(), b.Quality(), b.Record()}, Args: args[biz]}
	}
	cmds, err := rscript.Run(ctx, f.rdb, forwardScript, calls)
	if err != nil {
		return fmt.Errorf("copy status events: %w", err)
	}
	// Only what was copied leaves the outboxes: an event whose copy failed stays for
	// the next flush, which will not copy twice what did go.
	var copied []item
	var firstErr error
	failed := map[string]bool{} // recipients with an event whose copy failed
	for i, c := range cmds {
		if c.Err() != nil {
			firstErr = cmp(firstErr, c.Err())
			for _, it := range byBusiness[order[i]] {
				failed[it.uid] = true
			}
			continue
		}
		copied = append(copied, byBusiness[order[i]]...)
	}
	copied = append(copied, malformed...)
	// Recipients whose outbox this flush drains leave the index, with the score read.
	unindex := map[string][]any{}
	for i, u := range uids {
		if sc, err := scores[i].Result(); err == nil && len(reads[i].Val()) < outboxBatch && !failed[u] {
			k := keys.OutboxIndex(u)
			unindex[k] = append(unindex[k], u, strconv.FormatFloat(sc, 'f', -1, 64))
		}
	}
	if len(copied) > 0 || len(unindex) > 0 {
		// The removals first, then the index, in one round trip.
		var calls []rscript.Call
		for k, args := range unindex {
			calls = append(calls, rscript.Call{Keys: []string{k}, Args: args})
		}
		if _, err := rscript.RunAfter(ctx, f.rdb, func(p redis.Pipeliner) {
			for _, it := range copied {
				p.LRem(ctx, keys.Recipient(it.uid).Outbox(), 1, it.raw)
			}
		}, unindexScript, calls); err != nil {
			return fmt.Errorf("clear outboxes: %w", err)
		}
	}
	if firstErr != nil {
		return fmt.Errorf("copy status events: %w", firstErr)
	}
	f.log.Debug("forwarded status events", "events", len(copied), "recipients", len(uids))
	if more {
		for _, u := range uids {
			f.Kick(u)
		}
	}
	return nil
}

// forwardDedupe is how long the mark that an event was copied to its business's
// stream is kept (about 140 bytes of Redis per event, measured: at 600 events a
// second, some 50 MB). A copy repeats only while an outbox entry waits to be removed: two gateways
// flushing at once (milliseconds), or a gateway that died between copy and removal,
// whose entries the recipient's next activity flushes. An event copied again after
// the window reaches the business twice.
const forwardDedupe = 10 * time.Minute

//go:embed forward.lua
var forwardSource string

//go:embed unindex.lua
var unindexSource string

var (
	forwardScript = rscript.New(keys.Lua(forwardSource))
	unindexScript = rscript.New(unindexSource)
)

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
