package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// Limits of one SendBatch call: the gateway's count, and a size well under its 64 MiB
// request limit (a broadcast repeats the shared body in every message).
const (
	maxBatch      = 1000
	maxBatchBytes = 16 << 20
)

// lookupWorkers is how many lookups a broadcast has in flight at once.
const lookupWorkers = 16

// BroadcastResult is what happened to one recipient of a Broadcast: exactly one of
// Sent and Err is set.
type BroadcastResult struct {
	// Recipient is the phone number as the caller gave it.
	Recipient string
	// Sent is the accepted message.
	Sent *Sent
	// Err says why not: a *RejectedError, a *RateLimitedError (still over the rate
	// after the retries), an *InvalidArgumentError (this entry is invalid), or the
	// error that ended the broadcast before this recipient's turn.
	Err error
}

// Broadcast sends one message to many recipients. It seals the plaintext once, with
// one body shared by every device of every recipient and one wrap per device, and
// sends it with SendBatch, up to 1000 messages a call; the gateway stores the body
// once. All recipients' messages share one client message id (WithClientMessageID, or
// a random one): it is part of the sealed header.
//
// It returns one result per recipient, in the order of to. Recipients over the
// business's rate are sent again after the gateway's retry_after, as long as each
// round gets some through (WithRetry's attempts bound the rounds in a row that get
// none); recipients whose devices changed are looked up, sealed for and sent again
// once. The error is for what ends the whole broadcast (the context, the API key, the
// gateway unavailable after retries): results then hold what was done before it, and
// the error for every recipient not done. Calling Broadcast again with the same client
// message id is safe: what was accepted comes back as a duplicate.
func (b *Business) Broadcast(ctx context.Context, to []string, category e2e.Category, kind e2e.Kind, plaintext []byte, opts ...SendOption) ([]BroadcastResult, error) {
	o, err := b.sendOptions(opts)
	if err != nil {
		return nil, err
	}
	signer := b.signer.Load()
	if signer == nil {
		return nil, errors.New("client: broadcast: the Business has no signing key")
	}
	bc := &broadcast{b: b, signer: signer, h: e2e.Header{BusinessID: b.id, Category: category, Kind: kind, ClientMessageID: o.clientMessageID,
		SentTime: b.now()}, ttl: o.ttl, plaintext: plaintext, to: to, results: make([]BroadcastResult, len(to))}
	for i, r := range to {
		bc.results[i].Recipient = r
	}
	all := make([]int, len(to))
	for i := range all {
		all[i] = i
	}
	stale, err := bc.round(ctx, all, false)
	if err == nil && len(stale) > 0 {
		_, err = bc.round(ctx, stale, true)
	}
	if err != nil {
		for i := range bc.results {
			if r := &bc.results[i]; r.Sent == nil && r.Err == nil {
				r.Err = err
			}
		}
	}
	return bc.results, err
}

// broadcast is one Broadcast under way.
type broadcast struct {
	b         *Business
	signer    *e2e.SigningKey
	h         e2e.Header
	ttl       time.Duration
	plaintext []byte
	to        []string
	results   []BroadcastResult
}

// round looks up the recipients at idx (afresh if fresh), seals once for all their
// devices, and sends; it returns the recipients whose devices turned out stale.
func (bc *broadcast) round(ctx context.Context, idx []int, fresh bool) (stale []int, err error) {
	devices, err := bc.lookup(ctx, idx, fresh)
	if err != nil {
		return nil, err
	}
	var ready []int
	var all []e2e.Recipient
	seen := map[string]bool{}
	for _, i := range idx {
		if devices[i] == nil {
			continue
		}
		ready = append(ready, i)
		for _, d := range devices[i] {
			// The same number listed twice has the same devices: seal for them once.
			if !seen[d.DeviceID] {
				seen[d.DeviceID] = true
				all = append(all, d)
			}
		}
	}
	if len(ready) == 0 {
		return nil, nil
	}
	sealed, err := e2e.Seal(bc.signer, bc.h, bc.plaintext, all)
	if err != nil {
		return nil, fmt.Errorf("client: broadcast: %w", err)
	}
	msgs := make(map[int]*heraldv1.Message, len(ready))
	for _, i := range ready {
		msgs[i] = message(bc.to[i], bc.h, sealed, devices[i], bc.ttl, bc.signer)
	}
	return bc.send(ctx, ready, msgs, devices, !fresh)
}

// lookup finds each recipient's devices, lookupWorkers at a time. A recipient that
// would be rejected, or whose number is invalid, gets its result here and no devices.
func (bc *broadcast) lookup(ctx context.Context, idx []int, fresh bool) (map[int][]e2e.Recipient, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	devices := make(map[int][]e2e.Recipient, len(idx))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(lookupWorkers, len(idx)) {
		wg.Go(func() {
			for i := range next {
				ds, err := bc.b.devices(ctx, bc.to[i], bc.h.Category, fresh)
				var rej *RejectedError
				var inv *InvalidArgumentError
				mu.Lock()
				switch {
				case err == nil:
					devices[i] = ds
				case errors.As(err, &rej), errors.As(err, &inv):
					bc.results[i].Err = err
				default:
					cancel(err)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, i := range idx {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return devices, nil
}

// send sends the messages of the recipients at idx in batches, again and again for
// those over the rate, and records each result. With staleAgain, recipients whose
// devices changed are returned to be sent again; otherwise they are rejected.
func (bc *broadcast) send(ctx context.Context, idx []int, msgs map[int]*heraldv1.Message, devices map[int][]e2e.Recipient, staleAgain bool) (stale []int, err error) {
	b := bc.b
	for idle := 0; len(idx) > 0; {
		var later []int
		var retryAfter time.Duration
		progress := false
		for start := 0; start < len(idx); {
			end := batchEnd(idx, start, msgs)
			chunk := idx[start:end]
			if len(later) > 0 {
				// The rate already refused part of this round: what follows would be too.
				later = append(later, chunk...)
				start = end
				continue
			}
			req := &heraldv1.SendBatchRequest{Messages: make([]*heraldv1.Message, len(chunk))}
			for j, i := range chunk {
				req.Messages[j] = msgs[i]
			}
			var resp *heraldv1.SendBatchResponse
			err := b.retry(ctx, "send batch", func(ctx context.Context) error {
				var err error
				resp, err = b.rpc.SendBatch(b.authorized(ctx), req)
				return err
			})
			if err != nil {
				return nil, err
			}
			rs := resp.GetResults()
			if len(rs) != len(chunk) {
				return nil, fmt.Errorf("client: send batch: %d results for %d messages", len(rs), len(chunk))
			}
			for j, r := range rs {
				i := chunk[j]
				switch r.GetOutcome() {
				case heraldv1.Outcome_OUTCOME_ACCEPTED:
					bc.results[i].Sent = sent(bc.to[i], bc.h.ClientMessageID, r, devices[i])
					progress = true
				case heraldv1.Outcome_OUTCOME_RATE_LIMITED:
					later = append(later, i)
					retryAfter = max(retryAfter, r.GetRetryAfter().AsDuration())
				case heraldv1.Outcome_OUTCOME_STALE_DEVICES:
					b.forget(bc.to[i], bc.h.Category)
					if staleAgain {
						stale = append(stale, i)
					} else {
						bc.results[i].Err = rejected(bc.to[i], r)
					}
				case heraldv1.Outcome_OUTCOME_INVALID:
					e := &InvalidArgumentError{Op: "broadcast"}
					for _, v := range r.GetViolations() {
						e.Violations = append(e.Violations, Violation{Field: v.GetField(), Description: v.GetDescription()})
					}
					bc.results[i].Err = e
				default:
					bc.results[i].Err = rejected(bc.to[i], r)
				}
			}
			start = end
		}
		if len(later) == 0 {
			break
		}
		if progress {
			idle = 0
		} else {
			idle++
		}
		limited := func() {
			for _, i := range later {
				bc.results[i].Err = &RateLimitedError{Op: "broadcast", RetryAfter: retryAfter}
			}
		}
		if idle >= b.attempts {
			limited()
			break
		}
		wait := b.after(retryAfter, idle)
		b.log.DebugContext(ctx, "herald: broadcast over the rate; waiting", "left", len(later), "wait", wait)
		if err := sleep(ctx, wait); err != nil {
			if errors.Is(err, errDeadlineTooSoon) {
				limited()
				break
			}
			return nil, err
		}
		idx = later
	}
	return stale, nil
}

// batchEnd is where the batch starting at idx[start] ends: at most maxBatch messages
// and, past the first, maxBatchBytes.
func batchEnd(idx []int, start int, msgs map[int]*heraldv1.Message) int {
	size := 0
	end := start
	for end < len(idx) && end-start < maxBatch {
		m := msgs[idx[end]]
		n := len(m.GetBody()) + 256
		for _, e := range m.GetEnvelopes() {
			n += len(e.GetCiphertext()) + 64
		}
		if end > start && size+n > maxBatchBytes {
			break
		}
		size += n
		end++
	}
	return end
}
