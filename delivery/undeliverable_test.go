package delivery_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/delivery"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
)

// TestMissingBodyDoesNotWedgeMailbox: when a message's sealed body is gone from Redis
// (its write failed on another cluster node), Receive waits for it a little, as the
// write may still be on its way, then reports that message expired on the device and
// delivers the rest, rather than failing every Receive until the message expires.
func TestMissingBodyDoesNotWedgeMailbox(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	now := time.Now()
	uid := keys.UID([]byte("test-secret"), "+14155550100")
	u := keys.Recipient(uid)

	var clock atomic.Int64 // ms
	clock.Store(now.UnixMilli())
	svc := delivery.New(rs.Client, delivery.WithClock(func() time.Time { return time.UnixMilli(clock.Load()) }))
	defer svc.Close()
	devs := svc.Devices()
	code, _, err := devs.IssueCode(ctx, uid, now)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := devs.Register(ctx, uid, code, []byte("a public key"), 1, now)
	if err != nil {
		t.Fatal(err)
	}
	dev := reg.DeviceID

	lost, kept := keys.NewMessageID(uid, now), keys.NewMessageID(uid, now)
	ds, err := blocklist.New(rs.Client, blocklist.Caps{}).Admit(ctx, []blocklist.Admission{
		{UID: uid, Business: "biz_a", Category: blocklist.Transactional, Kind: "receipt", ClientMessageID: "c1",
			MessageID: lost, Now: now, Expires: now.Add(time.Hour), Body: []byte("lost body"),
			Envelopes: []blocklist.Envelope{{DeviceID: dev, Ciphertext: []byte("wrap 1")}}},
		{UID: uid, Business: "biz_a", Category: blocklist.Transactional, Kind: "receipt", ClientMessageID: "c2",
			MessageID: kept, Now: now, Expires: now.Add(time.Hour), Body: []byte("kept body"),
			Envelopes: []blocklist.Envelope{{DeviceID: dev, Ciphertext: []byte("wrap 2")}}},
	})
	if err != nil || ds[0].Outcome != blocklist.Accepted || ds[1].Outcome != blocklist.Accepted {
		t.Fatalf("Admit = %v, %v", ds, err)
	}
	if err := rs.Client.Del(ctx, keys.Body(blocklist.BodyHash([]byte("lost body")))).Err(); err != nil {
		t.Fatal(err)
	}

	mb := svc.Mailboxes()
	receive := func() ([]delivery.Delivery, error) {
		// The deadline only bounds a hang; the stream ends at the first delivery.
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		var got []delivery.Delivery
		err := mb.Stream(sctx, delivery.Principal{UID: uid, DeviceID: dev}, func(d delivery.Delivery) error {
			got = append(got, d)
			cancel()
			return nil
		}, func(delivery.Notice) error { return nil })
		return got, err
	}

	// Just admitted: the body may yet come; nothing is given up on.
	if got, err := receive(); err == nil {
		t.Fatalf("Stream delivered %+v with a body missing since admission", got)
	}
	if s := rs.Client.HGet(ctx, u.Message(lost), keys.MessageState(dev)).Val(); s != keys.StateQueued {
		t.Fatalf("the message without a body is in state %q at once, want still queued", s)
	}

	clock.Store(now.Add(2 * time.Minute).UnixMilli())
	got, err := receive()
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if len(got) != 1 || got[0].MessageID != kept || string(got[0].Body) != "kept body" {
		t.Fatalf("delivered %+v, want only %s with its body", got, kept)
	}

	// Expired on its only device, which never had it, it is gone.
	if rs.Client.Exists(ctx, u.Message(lost)).Val() != 0 {
		t.Fatal("the message without a body is still stored, though no device has it queued")
	}
	if rs.Client.ZScore(ctx, u.Mailbox(dev), lost).Err() == nil {
		t.Fatal("the message without a body is still in the mailbox")
	}
	if n := rs.Client.Exists(ctx, u.Envelope(lost, dev)).Val(); n != 0 {
		t.Fatal("the envelope of the message without a body is still stored")
	}
	var events []keys.Event
	for _, line := range rs.Client.LRange(ctx, u.Outbox(), 0, -1).Val() {
		e, err := keys.ParseEvent(line)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	expired := slices.IndexFunc(events, func(e keys.Event) bool {
		return e.Status == keys.StatusExpired && e.MessageID == lost && e.DeviceID == dev && e.ClientMessageID == "c1"
	})
	if expired < 0 {
		t.Fatalf("no EXPIRED event for the message without a body; outbox: %+v", events)
	}
}
