package delivery

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
)

// TestFlushMovesEventsOnce: events in recipients' outboxes reach their businesses'
// streams, leave the outboxes, and a second flush moves nothing again.
func TestFlushMovesEventsOnce(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	u1, u2 := keys.Recipient("uaaaaaaaaaaaaaaaaaaaaaaaaa"), keys.Recipient("ubbbbbbbbbbbbbbbbbbbbbbbbb")
	rs.Client.RPush(ctx, u1.Outbox(), "A|biz_a|m1|c1||1000", "D|biz_a|m1|c1|d1|2000", "not an event")
	rs.Client.RPush(ctx, u2.Outbox(), "R|biz_b|m2|c2|d2|3000")
	svc := New(rs.Client)
	defer svc.Close()
	for range 2 {
		if err := svc.forwarder.flush(ctx, []string{string(u1), string(u2)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []keys.Recipient{u1, u2} {
		if n := rs.Client.LLen(ctx, u.Outbox()).Val(); n != 0 {
			t.Fatalf("%s still holds %d entries", u.Outbox(), n)
		}
	}
	a := rs.Client.XRange(ctx, keys.Business("biz_a").Statuses(), "-", "+").Val()
	b := rs.Client.XRange(ctx, keys.Business("biz_b").Statuses(), "-", "+").Val()
	if len(a) != 2 || len(b) != 1 {
		t.Fatalf("streams hold %d and %d events, want 2 and 1", len(a), len(b))
	}
	if a[0].Values["s"] != "A" || a[1].Values["s"] != "D" || a[1].Values["d"] != "d1" || b[0].Values["m"] != "m2" {
		t.Fatalf("events = %v, %v", a, b)
	}
	// A delivered event counts toward the business's quality figure.
	if q := rs.Client.HGetAll(ctx, keys.Business("biz_a").Quality()).Val(); len(q) != 1 {
		t.Fatalf("quality counters = %v, want one delivered bucket", q)
	}
}

// TestEachEventReachesTheBusinessOnce: two gateways flushing the same outboxes at once,
// and a flush repeated as after a gateway died between copying events and removing
// them from the outbox, put each event in the business's stream once, and count each
// delivery once in its quality figure.
func TestEachEventReachesTheBusinessOnce(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	const recipients, perRecipient = 20, 30
	var uids []string
	var lines []string
	delivered := 0
	for r := range recipients {
		u := keys.Recipient(fmt.Sprintf("u%025d", r))
		uids = append(uids, string(u))
		for i := range perRecipient {
			// Per message: accepted, then delivered on each of two devices.
			status, dev := keys.StatusDelivered, fmt.Sprint("d", i%3)
			if i%3 == 0 {
				status, dev = keys.StatusAccepted, ""
			} else {
				delivered++
			}
			line := keys.Event{Status: status, Business: "biz_a", MessageID: fmt.Sprintf("%s.m%d", u, i/3), ClientMessageID: "c",
				DeviceID: dev, Time: time.UnixMilli(int64(1000 + i))}.Encode()
			lines = append(lines, line)
			rs.Client.RPush(ctx, u.Outbox(), line)
		}
	}
	a, b := New(rs.Client), New(rs.Client)
	defer a.Close()
	defer b.Close()
	var wg sync.WaitGroup
	for _, svc := range []*Service{a, b} {
		wg.Go(func() {
			for range 5 {
				if err := svc.forwarder.flush(ctx, uids); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// A gateway that died after copying left the events in the outboxes: they are
	// copied again, and must not reach the business twice.
	for r, u := range uids {
		rs.Client.RPush(ctx, keys.Recipient(u).Outbox(), lines[r*perRecipient:(r+1)*perRecipient])
	}
	if err := a.forwarder.flush(ctx, uids); err != nil {
		t.Fatal(err)
	}

	seen := map[string]int{}
	for _, x := range rs.Client.XRange(ctx, keys.Business("biz_a").Statuses(), "-", "+").Val() {
		e, err := keys.ParseStreamEvent("biz_a", x.Values)
		if err != nil {
			t.Fatal(err)
		}
		seen[e.Encode()]++
	}
	for _, line := range lines {
		if seen[line] != 1 {
			t.Errorf("event %s reached the business %d times, want once", line, seen[line])
		}
	}
	if len(seen) != len(lines) {
		t.Errorf("%d distinct events in the stream, want %d", len(seen), len(lines))
	}
	counted := 0
	for _, v := range rs.Client.HGetAll(ctx, keys.Business("biz_a").Quality()).Val() {
		n, _ := strconv.Atoi(v)
		counted += n
	}
	if counted != delivered {
		t.Errorf("quality figure counts %d deliveries, want %d", counted, delivered)
	}
	for _, u := range uids {
		if n := rs.Client.LLen(ctx, keys.Recipient(u).Outbox()).Val(); n != 0 {
			t.Fatalf("%s still holds %d entries", u, n)
		}
	}
}

// TestEventsADeadGatewayLeftAreForwarded: a gateway admits messages and takes acks,
// then dies before forwarding their status events. Another gateway's sweep finds the
// recipients in the outbox index and forwards the events, without the recipients or
// their devices doing anything; the index is left empty.
func TestEventsADeadGatewayLeftAreForwarded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var phones []Principal
	for i := range 3 {
		phones = append(phones, f.device(recipient(i)))
	}
	var want []string
	for _, p := range phones {
		id := f.send(time.Hour, p) // the dead gateway's admission: nothing forwarded
		if _, err := f.svc.Mailboxes().Ack(f.ctx, p, []string{id}, false); err != nil {
			t.Fatal(err)
		}
		want = append(want, keys.StatusAccepted+" "+id, keys.StatusDelivered+" "+id)
	}
	f.clock.Add(3 * time.Second) // past outboxGrace

	live := f.service(WithOutboxSweep(20 * time.Millisecond))
	ctx, stop := context.WithCancel(f.ctx)
	done := make(chan struct{})
	go func() { live.Run(ctx); close(done) }()
	defer func() { stop(); <-done }()

	deadline := time.Now().Add(10 * time.Second) // bounds a hang only
	for {
		var got []string
		for _, x := range f.rdb.XRange(f.ctx, keys.Business(biz).Statuses(), "-", "+").Val() {
			e, err := keys.ParseStreamEvent(biz, x.Values)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, e.Status+" "+e.MessageID)
		}
		slices.Sort(got)
		slices.Sort(want)
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the business's stream holds %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		n := int64(0)
		for i := range keys.OutboxShards {
			n += f.rdb.ZCard(f.ctx, keys.OutboxIndexShard(i)).Val()
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d recipients left in the outbox index after their outboxes drained", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
