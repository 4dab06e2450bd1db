package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/heraldhq/herald/blocklist"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/redistest"
)

// The README's figures for Redis bytes per message, and what this test holds them to:
// a queued message to one device with a 128-byte envelope, and the same message once
// its device acknowledged it.
const (
	inFlightBound = 1000 // bytes per message while queued, everything counted
	atRestBound   = 420  // bytes per message once delivered: settled record and idempotency key
)

// storageKinds sorts the keys a message leaves behind, so that the figures say where
// the bytes are.
var storageKinds = []struct {
	name string
	re   *regexp.Regexp
}{
	{"envelope", regexp.MustCompile(`^hr:\{u:[^}]+\}:msg:[^:]+:[^:]+$`)},
	{"message", regexp.MustCompile(`^hr:\{u:[^}]+\}:msg:[^:]+$`)},
	{"mailbox", regexp.MustCompile(`^hr:\{u:[^}]+\}:mb:`)},
	{"idempotency", regexp.MustCompile(`^hr:\{u:[^}]+\}:idem:`)},
	{"expiry index", regexp.MustCompile(`^hr:\{x:`)},
	{"status stream", regexp.MustCompile(`^hr:\{b:[^}]+\}:st$`)},
	{"dedupe marks", regexp.MustCompile(`^hr:\{b:[^}]+\}:fw:`)},
}

// TestRedisBytesPerMessage measures what Redis holds per message, by MEMORY USAGE of
// each kind of key: queued, and after its device acknowledged it. It holds the store to
// the README's figures: while queued, a message costs its envelope and bookkeeping;
// once delivered, only the settled record (for read receipts and reports) and the
// idempotency key are left, and nothing is left in the expiry index or mailbox. The
// business's status stream (capped in length) and the forwarder's dedupe marks (gone
// after ten minutes) are reported beside.
func TestRedisBytesPerMessage(t *testing.T) {
	t.Parallel()
	if redistest.Memory() {
		t.Skip("measures redis-server's memory")
	}
	const people, each = 100, 20
	g := startGateway(t, withCaps(blocklist.Caps{NewWindow: 24 * time.Hour}))
	_, key := g.newBusiness("Acme")
	numbers := make([]string, people)
	devs := make([]device, people)
	for i := range people {
		numbers[i] = fmt.Sprintf("+1415557%04d", i)
		devs[i] = g.register(numbers[i])
	}
	envelope := make([]byte, 128)
	rand.Read(envelope)
	batch := func(round int) []string {
		t.Helper()
		req := &heraldv1.SendBatchRequest{}
		for i := range people {
			req.Messages = append(req.Messages, &heraldv1.Message{Recipient: numbers[i], Category: tx, Kind: rcpt,
				ClientMessageId: fmt.Sprintf("order-%06d", round*people+i),
				Envelopes:       []*heraldv1.Envelope{{DeviceId: devs[i].id, Ciphertext: envelope}}})
		}
		resp, err := g.messaging.SendBatch(as(key), req)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, len(resp.Results))
		for i, r := range resp.Results {
			if r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
				t.Fatalf("round %d, message %d: %v", round, i, r)
			}
			ids[i] = r.MessageId
		}
		return ids
	}
	// receiveAll takes every queued delivery of every device and acknowledges it.
	receiveAll := func(want int) {
		t.Helper()
		for _, d := range devs {
			rc := g.receive(d)
			var got []string
			for range want {
				got = append(got, rc.next().MessageId)
			}
			rc.cancel()
			if _, err := g.recipient.Ack(as(d.token), &heraldv1.AckRequest{MessageIds: got}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// A first message sets up each person's relation to the business, which later
	// messages share; delivered, it is the baseline.
	batch(-1)
	receiveAll(1)
	base := storage(t, g)
	for round := range each {
		batch(round)
	}
	queued := storage(t, g)
	receiveAll(each)
	delivered := storage(t, g)

	n := int64(people * each)
	t.Logf("Redis bytes per message (one device, %d-byte envelope; %d messages; MEMORY USAGE):", len(envelope), n)
	t.Logf("  %-14s %8s %10s", "", "queued", "delivered")
	var inFlight, atRest int64
	var names []string
	for _, k := range storageKinds {
		names = append(names, k.name)
	}
	for _, k := range append(names, "other") {
		q, d := (queued[k]-base[k])/n, (delivered[k]-base[k])/n
		t.Logf("  %-14s %8d %10d", k, q, d)
		switch k {
		case "status stream", "dedupe marks":
		default:
			inFlight += q
			atRest += d
		}
	}
	t.Logf("  %-14s %8d %10d   (without the status stream and dedupe marks)", "total", inFlight, atRest)
	t.Logf("  used_memory: %d queued, %d delivered", (queued["used_memory"]-base["used_memory"])/n,
		(delivered["used_memory"]-base["used_memory"])/n)
	if inFlight > inFlightBound {
		t.Errorf("a queued message takes %d bytes, over the %d the README states", inFlight, inFlightBound)
	}
	if atRest > atRestBound {
		t.Errorf("a delivered message takes %d bytes, over the %d the README states", atRest, atRestBound)
	}
	for _, k := range []string{"envelope", "mailbox", "expiry index"} {
		if delivered[k] > base[k] {
			t.Errorf("delivered messages left %d bytes of %s", delivered[k]-base[k], k)
		}
	}
}

// storage sums MEMORY USAGE by kind of key once the store is quiet (status events
// forwarded, the expiry index written), and adds used_memory.
func storage(t *testing.T, g *gateway) map[string]int64 {
	t.Helper()
	snap := quiet(t, g.rdb)
	sums := map[string]int64{}
	for k := range snap {
		n, err := g.rdb.MemoryUsage(context.Background(), k, 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		kind := "other"
		for _, sk := range storageKinds {
			if sk.re.MatchString(k) {
				kind = sk.name
				break
			}
		}
		sums[kind] += n
	}
	sums["used_memory"] = usedMemory(t, g)
	return sums
}
