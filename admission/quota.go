package admission

import (
	"sync"
	"time"

	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/business"
)

// # The pending-bytes quota
//
// A business's messages in flight (queued on some device, not yet settled) may hold
// at most its quota of bytes in Redis. The count lives on the business's slot
// (keys.BusinessPending), but an admission runs on its recipient's slot, and the Send
// path has one round trip per recipient: so the count is not written by the
// admission, nor read for it.
//
//   - Counting: admit.lua stores each message's size (Message.PendingBytes: its
//     envelopes, its body when it brought it, a share for the rest) in the message
//     and in its ACCEPTED event, and settling the message (values.lua's settle) queues
//     a settled event with minus that size, both in the recipient's outbox, in the
//     step that makes the change. The forwarder, which already copies every event to
//     the business's slot exactly once, moves the count with each (forward.lua). So the
//     count is exact, late by the forwarding delay: milliseconds, or the outbox sweep
//     (4 s) for events of a gateway that died.
//   - Judging: a gateway reads the count with the business's limits (cached, so no
//     round trip in steady state; at most 2×business.LimitsCacheTTL old) and adds what
//     it admitted itself since a little before that read (forwardLag), which the
//     count may not show yet. A message that would take the business past its quota
//     is QuotaExceeded.
//
// The bound: the pending bytes can pass the quota only by what other gateways
// admitted that this one has not read yet, at most the business's rate over
// 2×LimitsCacheTTL + forwardLag (with its burst), times the largest message (about
// 1.1 MB); with one gateway, by nothing but its events forwarded later than
// forwardLag. A count that never came down (an event lost with Redis's data) errs
// towards refusing.

// Sizes a message is counted at, besides its envelopes and body: what Redis holds
// for a message and for each of its envelopes around the bytes themselves (measured,
// README: about 560 bytes of message record, idempotency key and expiry index entry,
// and 250 of envelope key and mailbox entry per device).
const (
	messageOverhead  = 560
	envelopeOverhead = 250
)

// forwardLag is how long after its admission a message may still be missing from
// its business's count: its ACCEPTED event is forwarded by its gateway within
// milliseconds, or swept from the outbox within about 4 s if that gateway died.
const forwardLag = 5 * time.Second

// DefaultPendingQuota is the bytes a business's messages in flight may hold unless
// the gateway is told otherwise (WithPendingQuota).
const DefaultPendingQuota = 256 << 20

// pendingQuota holds businesses to their quota of pending bytes on one gateway.
type pendingQuota struct {
	limit int64 // bytes per business; 0: no quota
	mu    sync.Mutex
	// recent is, per business, what this gateway admitted lately, in buckets of
	// chargeBucket, oldest first.
	recent map[string][]charge
}

type charge struct {
	at    time.Time // the start of its bucket
	bytes int64
}

const chargeBucket = 100 * time.Millisecond

// keep is how long an admission's charge is remembered: the count read with the
// limits is at most 2×LimitsCacheTTL old, and must be topped up with what was
// admitted from forwardLag before it.
const keep = 2*business.LimitsCacheTTL + forwardLag

// view is biz's pending bytes as this gateway sees them now: counted, as Redis
// counted them at read, and what this gateway admitted from forwardLag before then.
func (q *pendingQuota) view(biz string, counted int64, read, now time.Time) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	cs := q.prune(biz, now)
	v := counted
	from := read.Add(-forwardLag)
	for _, c := range cs {
		if !c.at.Add(chargeBucket).Before(from) {
			v += c.bytes
		}
	}
	return v
}

// add remembers bytes admitted for biz at now.
func (q *pendingQuota) add(biz string, now time.Time, bytes int64) {
	if bytes <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	cs := q.prune(biz, now)
	at := now.Truncate(chargeBucket)
	if n := len(cs); n > 0 && cs[n-1].at.Equal(at) {
		cs[n-1].bytes += bytes
	} else {
		cs = append(cs, charge{at: at, bytes: bytes})
	}
	q.recent[biz] = cs
}

// prune drops biz's charges older than keep and returns the rest. Under mu.
func (q *pendingQuota) prune(biz string, now time.Time) []charge {
	cs := q.recent[biz]
	i := 0
	for i < len(cs) && cs[i].at.Add(keep).Before(now) {
		i++
	}
	cs = cs[i:]
	if len(cs) == 0 {
		delete(q.recent, biz)
	} else {
		q.recent[biz] = cs
	}
	return cs
}

// charges holds the admissions of one call to the quota, in order: each one that fits
// gets its size as PendingBytes, the others OverQuota. A body counts with the first
// message of the call that brings it and fits (the call stores it once, however many
// messages name it, and a message over the quota stores nothing). pending is what the
// business holds before the call; it returns what it holds after.
func (q *pendingQuota) charges(as []blocklist.Admission, pending int64) int64 {
	bodies := map[string]bool{}
	for i, a := range as {
		n := int64(messageOverhead)
		for _, e := range a.Envelopes {
			n += int64(len(e.Ciphertext)) + envelopeOverhead
		}
		newBody := len(a.Body) > 0 && !bodies[string(a.Body)]
		if newBody {
			n += int64(len(a.Body))
		}
		if q.limit > 0 && pending+n > q.limit {
			as[i].PendingBytes = blocklist.OverQuota
			continue
		}
		if newBody {
			bodies[string(a.Body)] = true
		}
		pending += n
		as[i].PendingBytes = n
	}
	return pending
}
