package delivery

import (
	"context"
	_ "embed"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
	"github.com/redis/go-redis/v9"
)

//go:embed expire.lua
var expireSource string

var expireScript = rscript.New(keys.Lua(expireSource))

// Expiries reports messages expired on devices that never came back for them. Fetch
// and Ack already report what they find expired; this covers the rest.
//
// Admitted messages are indexed by expiry in a few sharded sorted sets (hr:{x:N}); the
// admitting gateway adds them in the background, batched, off the Send path, and the
// gateway that sees a message settle (every device acked or refused it) takes it out
// the same way (a message settled by a fetch or an undeliverable body stays until its
// expiry, when the sweep finds nothing to report). A write Redis failed is kept and
// tried again. A message missing from the index all the same (its gateway died
// before writing) is still reported expired when its device next connects. Every gateway sweeps;
// the expiry script moves each device's state once, so two sweepers report nothing
// twice.
type Expiries struct {
	rdb    redis.UniversalClient
	out    *Forwarder
	now    func() time.Time
	log    *slog.Logger
	every  time.Duration // see WithExpirySweep
	window int64         // receipt window in ms; see WithReceiptWindow

	mu      sync.Mutex
	pending []indexChange // in the order they were made
	wake    chan struct{}
}

// indexChange is a message to add to the expiry index (at its expiry) or to take out.
type indexChange struct {
	id      string
	expires int64 // ms; 0 takes it out
}

// newExpiries returns Expiries on rdb that sweep every so often; their reports go out
// through out, and what they expire is settled with the receipt window.
func newExpiries(rdb redis.UniversalClient, out *Forwarder, now func() time.Time, log *slog.Logger,
	every, receiptWindow time.Duration) *Expiries {
	return &Expiries{rdb: rdb, out: out, now: now, log: log, every: every, window: receiptWindow.Milliseconds(),
		wake: make(chan struct{}, 1)}
}

// Track indexes an admitted message by its expiry. It never blocks.
func (e *Expiries) Track(messageID string, expires time.Time) {
	e.change([]indexChange{{id: messageID, expires: expires.UnixMilli()}})
}

// untrack takes settled messages out of the index. It never blocks.
func (e *Expiries) untrack(ids []string) {
	if len(ids) == 0 {
		return
	}
	cs := make([]indexChange, len(ids))
	for i, id := range ids {
		cs[i] = indexChange{id: id}
	}
	e.change(cs)
}

func (e *Expiries) change(cs []indexChange) {
	e.mu.Lock()
	e.pending = append(e.pending, cs...)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// run writes the index and sweeps it until ctx ends.
func (e *Expiries) run(ctx context.Context) {
	sweep := time.NewTicker(e.every)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			e.flush(final)
			cancel()
			return
		case <-e.wake:
			linger(ctx, expiryLinger)
			e.flush(ctx)
		case <-sweep.C:
			e.flush(ctx)
			if err := e.sweep(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("expiry sweep failed; will retry", "err", err)
			}
		}
	}
}

// expiryLinger is how long a change to the expiry index waits for others to join its
// round trip. The index is off the Send path and a best effort, so the wait costs
// nothing that matters, and a message acknowledged within it never touches the index.
const expiryLinger = 50 * time.Millisecond

func (e *Expiries) flush(ctx context.Context) {
	e.mu.Lock()
	batch := e.pending
	e.pending = nil
	e.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	// The last change of each message wins; a message admitted and settled within one
	// batch (a device online and quick to ack) never touches the index.
	adds, removes := map[string]int64{}, map[string]bool{}
	for _, c := range batch {
		switch _, added := adds[c.id]; {
		case c.expires != 0:
			adds[c.id] = c.expires
			delete(removes, c.id)
		case added:
			delete(adds, c.id)
		default:
			removes[c.id] = true
		}
	}
	if len(adds) == 0 && len(removes) == 0 {
		return
	}
	zadds, zrems := map[string][]redis.Z{}, map[string][]any{}
	for id, x := range adds {
		k := expiryShard(id)
		zadds[k] = append(zadds[k], redis.Z{Score: float64(x), Member: id})
	}
	for id := range removes {
		k := expiryShard(id)
		zrems[k] = append(zrems[k], id)
	}
	if _, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, zs := range zadds {
			p.ZAdd(ctx, k, zs...)
		}
		for k, ids := range zrems {
			p.ZRem(ctx, k, ids...)
		}
		return nil
	}); err != nil {
		// Put the batch back, for the next flush (the sweep's tick retries it) or, when
		// stopping, for run's last flush, which has a context of its own: a message
		// missing from the index is settled only if its device comes back, and until
		// then its bytes count against its business's quota. ZADD or ZREM of the same
		// members again changes nothing. Bounded, so that Redis gone for long cannot
		// grow the gateway without end.
		e.mu.Lock()
		e.pending = append(batch, e.pending...)
		dropped := max(len(e.pending)-maxPendingIndex, 0)
		e.pending = e.pending[dropped:]
		e.mu.Unlock()
		if ctx.Err() == nil {
			e.log.Warn("indexing expiries failed; will retry", "err", err, "dropped", dropped)
		}
	}
}

// maxPendingIndex bounds the index changes a gateway keeps while Redis fails them
// (about 100 bytes each); past it the oldest go, and their messages are settled when
// their devices next connect.
const maxPendingIndex = 1 << 20

// expiryShards is how many sorted sets the expiry index is spread over, so that no
// one Redis Cluster slot takes every admission's index write.
const expiryShards = 16

func expiryShard(messageID string) string {
	h := fnv.New32a()
	h.Write([]byte(messageID))
	return keys.ExpiryIndex(int(h.Sum32() % expiryShards))
}

// sweep reports every indexed message past its expiry, up to 256 per shard a call.
func (e *Expiries) sweep(ctx context.Context) error {
	now := e.now()
	ranges := make([]*redis.StringSliceCmd, expiryShards)
	if _, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range expiryShards {
			ranges[i] = p.ZRangeByScore(ctx, keys.ExpiryIndex(i), &redis.ZRangeBy{Min: "-inf",
				Max: strconv.FormatInt(now.UnixMilli(), 10), Count: 256})
		}
		return nil
	}); err != nil {
		return fmt.Errorf("sweep expiries: %w", err)
	}
	var calls []rscript.Call
	var ids []string
	for _, r := range ranges {
		for _, id := range r.Val() {
			uid, ok := keys.MessageUID(id)
			if !ok {
				continue
			}
			u := keys.Recipient(uid)
			calls = append(calls, rscript.Call{Keys: []string{u.Message(id), u.Outbox()},
				Args: []any{now.UnixMilli(), u.Mailbox(""), id, e.window}})
			ids = append(ids, id)
		}
	}
	if len(calls) == 0 {
		return nil
	}
	// The recipients go into the outbox index ahead of the scripts that may add their
	// EXPIRED events (see runIndexed).
	cmds, err := rscript.RunAfter(ctx, e.rdb, func(p redis.Pipeliner) {
		for _, id := range ids {
			uid, _ := keys.MessageUID(id)
			p.ZAdd(ctx, keys.OutboxIndex(uid), redis.Z{Score: float64(now.UnixMilli()), Member: uid})
		}
	}, expireScript, calls)
	if err != nil {
		return fmt.Errorf("sweep expiries: %w", err)
	}
	done := map[string][]any{}
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil || n < 0 {
			continue // not expired by its own record (clock skew) or failed: next sweep
		}
		if n > 0 {
			uid, _ := keys.MessageUID(ids[i])
			e.out.Kick(uid)
		}
		done[expiryShard(ids[i])] = append(done[expiryShard(ids[i])], ids[i])
	}
	_, err = e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, ms := range done {
			p.ZRem(ctx, k, ms...)
		}
		return nil
	})
	return err
}
