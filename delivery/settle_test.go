package delivery

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/redis/go-redis/v9"
)

// TestStorageEndsWithTheMessage: a message stays whole while any device has it
// queued; once none has, it is cut to its settled record, kept for the receipt window
// (read receipts and reports still work on it) and taken out of the expiry index, and
// nothing else of it is left but its idempotency key.
func TestStorageEndsWithTheMessage(t *testing.T) {
	t.Parallel()
	const window = 3 * time.Hour
	f := newFixture(t, WithReceiptWindow(window))
	uid := recipient(0)
	u := keys.Recipient(uid)
	phone, laptop := f.device(uid), f.device(uid)
	id := f.send(24*time.Hour, phone, laptop)
	f.track(f.svc, 24*time.Hour, id)
	f.events() // ACCEPTED

	stored := func() keys.Message {
		t.Helper()
		m, err := keys.ParseMessage(f.rdb.HGetAll(f.ctx, u.Message(id)).Val())
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ack := func(p Principal, read bool) {
		t.Helper()
		if unknown, err := f.svc.Mailboxes().Ack(f.ctx, p, []string{id}, read); err != nil || len(unknown) != 0 {
			t.Fatalf("ack = %v, %v", unknown, err)
		}
	}

	ack(phone, false)
	if m := stored(); m.Settled || m.Devices[laptop.DeviceID].State != keys.StateQueued {
		t.Fatalf("with the laptop still to receive it, the message is %+v", m)
	}
	f.svc.expiries.flush(f.ctx)
	if n := f.indexed(); n != 1 {
		t.Fatalf("the expiry index holds %d messages while one is in flight", n)
	}

	ack(laptop, false)
	want := keys.Message{Settled: true, Business: biz, ClientMessageID: "c1", Devices: map[string]keys.MessageDevice{
		phone.DeviceID: {State: keys.StateDelivered}, laptop.DeviceID: {State: keys.StateDelivered}}}
	if m := stored(); !reflect.DeepEqual(m, want) {
		t.Fatalf("settled message = %+v, want %+v", m, want)
	}
	if ttl := f.rdb.PTTL(f.ctx, u.Message(id)).Val(); ttl <= 0 || ttl > window {
		t.Fatalf("the settled message lives %v more, want at most the receipt window %v", ttl, window)
	}
	f.svc.expiries.flush(f.ctx)
	if n := f.indexed(); n != 0 {
		t.Fatalf("the expiry index still holds %d messages after the message settled", n)
	}

	// A read receipt and a report still find it.
	ack(phone, true)
	if got, want := f.events(), []status{{StatusDelivered, id, phone.DeviceID}, {StatusDelivered, id, laptop.DeviceID},
		{StatusRead, id, phone.DeviceID}}; !slices.Equal(got, want) {
		t.Fatalf("reported %v, want %v", got, want)
	}
	if b, err := f.svc.Mailboxes().Report(f.ctx, laptop, id, "spam"); b != biz || err != nil {
		t.Fatalf("report of the settled message = %q, %v", b, err)
	}
	want.Devices[phone.DeviceID] = keys.MessageDevice{State: keys.StateRead}
	want.Devices[laptop.DeviceID] = keys.MessageDevice{State: keys.StateDelivered, Report: "spam"}
	if m := stored(); !reflect.DeepEqual(m, want) {
		t.Fatalf("after the read receipt and the report the message is %+v, want %+v", m, want)
	}

	// Of the message, only the settled record and the idempotency key are left.
	var left []string
	for _, k := range f.rdb.Keys(f.ctx, "hr:{u:"+uid+"}:*").Val() {
		switch k {
		case u.Devices(), u.Pref(biz), u.Businesses(), u.Sequence(), u.Seen(biz), u.Code(), u.Notices(), u.VerifyCounts():
		default:
			left = append(left, k)
		}
	}
	slices.Sort(left)
	if wantLeft := []string{u.Idempotency(biz, "c1"), u.Message(id)}; !slices.Equal(left, wantLeft) {
		t.Fatalf("keys left of the recipient: %v, want %v", left, wantLeft)
	}
}

// TestUnreceivedMessageGoes: a message that no device received (refused on one,
// expired on the other) is deleted as soon as the last device's status is final, and
// a report of it is refused; its status events were all reported first.
func TestUnreceivedMessageGoes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	uid := recipient(0)
	u := keys.Recipient(uid)
	phone, laptop := f.device(uid), f.device(uid)
	id := f.send(time.Minute, phone, laptop)
	f.track(f.svc, time.Minute, id)
	f.events() // ACCEPTED

	if unknown, err := f.svc.Mailboxes().Reject(f.ctx, phone, []Rejection{{MessageID: id, Reason: keys.RejectBadSignature}}); err != nil || len(unknown) != 0 {
		t.Fatalf("reject = %v, %v", unknown, err)
	}
	if f.rdb.Exists(f.ctx, u.Message(id)).Val() != 1 {
		t.Fatal("the message went while the laptop still had it queued")
	}
	f.clock.Add(2 * time.Minute)
	f.sweep(f.svc)
	if f.rdb.Exists(f.ctx, u.Message(id)).Val() != 0 {
		t.Fatal("the message is still stored, though no device received it and none has it queued")
	}
	if n := f.indexed(); n != 0 {
		t.Fatalf("the expiry index still holds %d messages", n)
	}
	if got, want := f.events(), []status{{StatusFailed, id, phone.DeviceID}, {StatusExpired, id, laptop.DeviceID}}; !slices.Equal(got, want) {
		t.Fatalf("reported %v, want %v", got, want)
	}
	if _, err := f.svc.Mailboxes().Report(f.ctx, phone, id, "spam"); !errors.Is(err, ErrNotDelivered) {
		t.Fatalf("report of a message the phone refused = %v, want ErrNotDelivered", err)
	}
}

// TestAdmittedAndSettledInOneBatchNeverIndexed: a message acked before its gateway
// wrote the expiry index is never written there.
func TestAdmittedAndSettledInOneBatchNeverIndexed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	phone := f.device(recipient(0))
	id := f.send(time.Hour, phone)
	f.svc.Expiries().Track(id, f.clock.Now().Add(time.Hour))
	if _, err := f.svc.Mailboxes().Ack(f.ctx, phone, []string{id}, false); err != nil {
		t.Fatal(err)
	}
	var writes int
	f.rdb.AddHook(countWrites{&writes})
	f.svc.expiries.flush(f.ctx)
	if n := f.indexed(); n != 0 || writes != 0 {
		t.Fatalf("the index holds %d messages after %d index writes, want none", n, writes)
	}
}

// countWrites counts the commands sent in pipelines, as the index is written.
type countWrites struct{ n *int }

func (c countWrites) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c countWrites) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (c countWrites) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		*c.n += len(cmds)
		return next(ctx, cmds)
	}
}
