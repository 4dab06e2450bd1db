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

// reserve holds one call's admissions to biz's quota, in order (charges), against
// what this gateway sees of biz's pending bytes: counted, as Redis counted them at
// read, and what this gateway charged from forwardLag before then. What it charges
// is remembered at once, in the same step, so that calls admitting at the same time
// on this gateway each see the others' charges; give back (release) what was charged
// for admissions that turned out not to be admitted. It returns the pending bytes it
// saw before the call.
func (q *pendingQuota) reserve(biz string, counted int64, read, now time.Time, as []blocklist.Admission) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	pending := counted
	from := read.Add(-forwardLag)
	for _, c := range q.prune(biz, now) {
		if !c.at.Add(chargeBucket).Before(from) {
			pending += c.bytes
		}
	}
	q.add(biz, now, q.charges(as, pending))
	return pending
}

// release gives back bytes reserved for biz at now for admissions that were not
// admitted (refused, or a duplicate of one admitted before).
func (q *pendingQuota) release(biz string, now time.Time, bytes int64) {
	if bytes <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.add(biz, now, -bytes)
}

// add changes what biz was charged at now by bytes. Under mu.
func (q *pendingQuota) add(biz string, now time.Time, bytes int64) {
	if bytes == 0 {
		return
	}
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
// gets its size as PendingBytes, the others OverQuota. pending is what the business
// holds before the call; it returns what the call charged.
//
// A body is stored once per call however many messages name it, and only by the
// messages that fit. It is judged whole with the first of them, then shared out
// among all of them that fit, so that one of them turning out refused (blocked, say,
// or a duplicate) leaves only its share uncounted, not the body.
func (q *pendingQuota) charges(as []blocklist.Admission, pending int64) int64 {
	judged := map[string]bool{}
	for i, a := range as {
		n := int64(messageOverhead)
		for _, e := range a.Envelopes {
			n += int64(len(e.Ciphertext)) + envelopeOverhead
		}
		newBody := len(a.Body) > 0 && !judged[string(a.Body)]
		if newBody {
			n += int64(len(a.Body))
		}
		if q.limit > 0 && pending+n > q.limit {
			as[i].PendingBytes = blocklist.OverQuota
			continue
		}
		pending += n
		if newBody {
			judged[string(a.Body)] = true
			n -= int64(len(a.Body)) // shared out below
		}
		as[i].PendingBytes = n
	}
	var charged int64
	sharers := map[string][]int{}
	for i, a := range as {
		if a.PendingBytes == blocklist.OverQuota {
			continue
		}
		charged += a.PendingBytes
		if len(a.Body) > 0 {
			sharers[string(a.Body)] = append(sharers[string(a.Body)], i)
		}
	}
	for body, is := range sharers {
		size, k := int64(len(body)), int64(len(is))
		for j, i := range is {
			share := size / k
			if j == 0 {
				share += size % k
			}
			as[i].PendingBytes += share
		}
		charged += size
	}
	return charged
}
