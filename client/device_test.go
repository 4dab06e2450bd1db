package client_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/protobuf/proto"
)

func cloneDelivery(d *heraldv1.Delivery) *heraldv1.Delivery {
	return proto.Clone(d).(*heraldv1.Delivery)
}

// TestReplayRejected: a message accepted and acknowledged is refused when it comes
// again, under its own id or under another one, also by a device restored from its
// saved state.
func TestReplayRejected(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	b := g.business(nil, high)
	tp := newTap(g.conn)
	phone := g.device(tp, alice, e2e.X25519)
	if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("paid"), client.WithClientMessageID("invoice-9")); err != nil {
		t.Fatal(err)
	}
	m := receiveMessages(t, phone, 1)[0]
	d := tp.delivered()[0]

	// Before the ack, the same delivery may come again (at least once delivery).
	if again, err := phone.Open(d); err != nil || again.ID != m.ID {
		t.Fatalf("unacknowledged delivery opened again: %v, %v", again, err)
	}
	if err := phone.Ack(t.Context(), m.ID); err != nil {
		t.Fatal(err)
	}
	state, err := phone.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := client.LoadDevice(g.conn, state)
	if err != nil {
		t.Fatal(err)
	}
	for _, dev := range []*client.Device{phone, restored} {
		for name, replay := range map[string]*heraldv1.Delivery{
			"same id":    d,
			"another id": with(d, func(d *heraldv1.Delivery) { d.MessageId += "x" }),
		} {
			got, err := dev.Open(replay)
			var rej *client.RejectedDeliveryError
			if got != nil || !errors.As(err, &rej) || !errors.Is(err, client.ErrReplay) || rej.MessageID != replay.GetMessageId() {
				t.Errorf("replay, %s: %v, %v; want ErrReplay", name, got, err)
			}
		}
	}

	// A message sealed longer ago than the device remembers is refused too.
	late, err := client.LoadDevice(g.conn, state, client.WithClock(func() time.Time { return time.Now().Add(client.ReplayWindow + time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("late")); err != nil {
		t.Fatal(err)
	}
	if rs := receive(t, late, 1); !errors.Is(rs[0].err, client.ErrReplay) {
		t.Errorf("message older than the replay window: %v", rs[0].err)
	}
}

// TestKeyChangeSurfaced: a device pins the business's first key; a message signed by
// a key the operator put in its place is withheld as a *KeyChangedError, and left
// queued, until the person trusts the new key.
func TestKeyChangeSurfaced(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	b := g.business(nil, high)
	phone := g.device(nil, alice, e2e.X25519)
	ctx := t.Context()
	if _, err := b.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("first")); err != nil {
		t.Fatal(err)
	}
	first := receiveMessages(t, phone, 1)[0]
	if err := phone.Ack(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	pinned := phone.PinnedKey(b.ID())
	if len(pinned) == 0 {
		t.Fatal("nothing pinned after the first message")
	}

	newSigner, _ := e2e.GenerateSigningKey()
	rotated := client.NewBusiness(g.conn, b.ID(), businessKey(t, g, b), newSigner)
	if err := rotated.RegisterSigningKey(ctx); !errors.Is(err, client.ErrSigningKeyExists) {
		t.Fatalf("registering another key: %v, want ErrSigningKeyExists", err)
	}
	g.replaceSigningKey(b.ID(), newSigner)
	s, err := rotated.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("second"))
	if err != nil {
		t.Fatal(err)
	}
	rs := receive(t, phone, 1)
	var kc *client.KeyChangedError
	if rs[0].msg != nil || !errors.As(rs[0].err, &kc) || kc.BusinessID != b.ID() || kc.MessageID != s.MessageID ||
		!bytes.Equal(kc.Pinned, pinned) || !bytes.Equal(kc.Offered, newSigner.PublicKey()) {
		t.Fatalf("message under a new key: %v, %v; want a *KeyChangedError", rs[0].msg, rs[0].err)
	}
	// Still queued, still withheld.
	if rs := receive(t, phone, 1); !errors.As(rs[0].err, &kc) {
		t.Fatalf("second receive: %v, want the key change again", rs[0].err)
	}

	if err := phone.TrustKey(kc.BusinessID, kc.Offered); err != nil {
		t.Fatal(err)
	}
	if m := receiveMessages(t, phone, 1)[0]; string(m.Body) != "second" {
		t.Errorf("after TrustKey received %q", m.Body)
	}
}

// TestOpenRejectsTampering: whatever part of a delivery is changed on the way, the
// device refuses it with a *RejectedDeliveryError saying why; a changed key field
// that did not sign the message changes nothing.
func TestOpenRejectsTampering(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	b := g.business(nil, high)
	tp := newTap(g.conn)
	phone := g.device(tp, alice, e2e.X25519)
	laptop := g.device(tp, alice, e2e.X25519)
	bobPhone := g.device(tp, bob, e2e.X25519)
	if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("receipt")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Send(t.Context(), bob, e2e.Transactional, e2e.Receipt, []byte("bob's")); err != nil {
		t.Fatal(err)
	}
	// Each device opens its own delivery, which pins the business's key.
	for _, d := range []*client.Device{phone, laptop, bobPhone} {
		receiveMessages(t, d, 1)
	}
	own := map[string]*heraldv1.Delivery{}
	for _, d := range tp.delivered() {
		own[d.GetKeyId()] = d
	}
	mine, forLaptop, forBob := own[phone.KeyID()], own[laptop.KeyID()], own[bobPhone.KeyID()]

	tests := []struct {
		name   string
		change func(d *heraldv1.Delivery)
		want   error
	}{
		{"category relabelled", func(d *heraldv1.Delivery) { d.Category = heraldv1.Category_CATEGORY_MARKETING }, e2e.ErrHeaderMismatch},
		{"kind relabelled", func(d *heraldv1.Delivery) { d.Kind = heraldv1.Kind_KIND_ACCOUNT_UPDATE }, e2e.ErrHeaderMismatch},
		{"client message id changed", func(d *heraldv1.Delivery) { d.ClientMessageId = "other" }, e2e.ErrHeaderMismatch},
		{"business id changed", func(d *heraldv1.Delivery) { d.BusinessId = "b_other" }, e2e.ErrHeaderMismatch},
		{"another device's wrap", func(d *heraldv1.Delivery) { d.Ciphertext, d.KeyId = forLaptop.GetCiphertext(), forLaptop.GetKeyId() }, e2e.ErrNotForThisDevice},
		{"another message's body", func(d *heraldv1.Delivery) { d.Body = forBob.GetBody() }, e2e.ErrBadSignature},
		{"body bit flipped", func(d *heraldv1.Delivery) { d.Body = flip(d.GetBody()) }, e2e.ErrBadSignature},
		{"wrap bit flipped", func(d *heraldv1.Delivery) { d.Ciphertext = flip(d.GetCiphertext()) }, e2e.ErrBadSignature},
		{"no body", func(d *heraldv1.Delivery) { d.Body = nil }, e2e.ErrMalformed},
		{"unknown business, no key", func(d *heraldv1.Delivery) { d.BusinessId, d.BusinessSigningKey = "b_other", nil }, client.ErrNoSigningKey},
	}
	for _, tt := range tests {
		d := with(mine, func(d *heraldv1.Delivery) {
			d.MessageId += "t" // not the id opened, so that only the change is judged
			tt.change(d)
		})
		m, err := phone.Open(d)
		var rej *client.RejectedDeliveryError
		if m != nil || !errors.As(err, &rej) || !errors.Is(err, tt.want) || rej.MessageID != d.GetMessageId() {
			t.Errorf("%s: %v, %v; want a *RejectedDeliveryError for %v", tt.name, m, err, tt.want)
		}
	}

	// A delivery whose key field was swapped, but signed by the pinned key, is genuine.
	forger, _ := e2e.GenerateSigningKey()
	swapped := with(mine, func(d *heraldv1.Delivery) { d.BusinessSigningKey = forger.PublicKey() })
	if m, err := phone.Open(swapped); err != nil || string(m.Body) != "receipt" {
		t.Errorf("delivery with a swapped key field: %v, %v; want it opened under the pinned key", m, err)
	}
	// A first contact without any key cannot be verified.
	fresh := g.device(nil, carol, e2e.X25519)
	if _, err := fresh.Open(with(mine, func(d *heraldv1.Delivery) { d.BusinessSigningKey = nil })); !errors.Is(err, client.ErrNoSigningKey) {
		t.Errorf("no key to verify with: %v", err)
	}
}

func flip(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)/2] ^= 1
	return c
}

// TestReceiveDropsForgeries: Receive acknowledges a delivery it rejects, so that it
// does not come back, and goes on with the next.
func TestReceiveDropsForgeries(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	b := g.business(nil, high)
	phone := g.device(nil, alice, e2e.X25519)
	if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("genuine")); err != nil {
		t.Fatal(err)
	}
	m := receiveMessages(t, phone, 1)[0]
	if err := phone.Ack(t.Context(), m.ID); err != nil {
		t.Fatal(err)
	}

	// Someone with the API key but not the signing key sends in the business's name.
	forger, _ := e2e.GenerateSigningKey()
	impostor := client.NewBusiness(g.conn, b.ID(), businessKey(t, g, b), forger)
	if _, err := impostor.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("pay here")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("genuine again")); err != nil {
		t.Fatal(err)
	}
	rs := receive(t, phone, 2)
	var rej *client.RejectedDeliveryError
	if !errors.As(rs[0].err, &rej) || !errors.Is(rs[0].err, e2e.ErrBadSignature) {
		t.Errorf("forgery: %v, %v; want rejected for its signature", rs[0].msg, rs[0].err)
	}
	if rs[1].err != nil || string(rs[1].msg.Body) != "genuine again" {
		t.Fatalf("after the forgery: %v, %v", rs[1].msg, rs[1].err)
	}
	if err := phone.Ack(t.Context(), rs[1].msg.ID); err != nil {
		t.Fatal(err)
	}
	quiet(t, phone)
}

// TestDeviceStateRoundTrip: a device saved and restored keeps its keys (retired ones
// too), token and pins.
func TestDeviceStateRoundTrip(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	b := g.business(nil, high)
	phone := g.device(nil, alice, e2e.MLKEM768X25519)
	if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("before")); err != nil {
		t.Fatal(err)
	}
	if err := phone.RotateKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	state, err := phone.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := client.LoadDevice(g.conn, state)
	if err != nil {
		t.Fatal(err)
	}
	if restored.ID() != phone.ID() || restored.KeyID() != phone.KeyID() {
		t.Fatalf("restored %s/%s, want %s/%s", restored.ID(), restored.KeyID(), phone.ID(), phone.KeyID())
	}
	if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("after")); err != nil {
		t.Fatal(err)
	}
	ms := receiveMessages(t, restored, 2)
	if string(ms[0].Body) != "before" || string(ms[1].Body) != "after" {
		t.Errorf("restored device read %q, %q", ms[0].Body, ms[1].Body)
	}
	if !bytes.Equal(restored.PinnedKey(b.ID()), phone.PinnedKey(b.ID())) && len(phone.PinnedKey(b.ID())) > 0 {
		t.Error("pins differ")
	}

	// Past the retention, the retired key is dropped from the saved state.
	later, err := client.LoadDevice(g.conn, state, client.WithClock(func() time.Time { return time.Now().Add(client.RetiredKeyRetention + time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	pruned, err := later.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	if len(pruned) >= len(state) {
		t.Errorf("state of %d bytes after the retention, %d before", len(pruned), len(state))
	}
	if _, err := client.LoadDevice(g.conn, []byte(`{"version":99}`)); err == nil {
		t.Error("loaded a state of an unknown version")
	}
}

// TestPersonsChoices: consent, block, preferences and a spam report, as a person's
// device makes them.
func TestPersonsChoices(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	b := g.business(nil, high)
	phone := g.device(nil, alice, e2e.X25519)
	ctx := t.Context()

	if _, err := b.Send(ctx, alice, e2e.Marketing, e2e.Offer, []byte("sale")); err == nil {
		t.Fatal("marketing sent without an opt-in")
	}
	if err := phone.SetConsent(ctx, b.ID(), e2e.Marketing, client.OptedIn); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Send(ctx, alice, e2e.Marketing, e2e.Offer, []byte("sale")); err != nil {
		t.Fatal(err)
	}
	m := receiveMessages(t, phone, 1)[0]
	if err := phone.Read(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := phone.ReportSpam(ctx, m.ID, client.ReasonSpam); err != nil {
		t.Fatal(err)
	}
	biz, err := g.admin.GetBusiness(g.adminCtx(), &heraldv1.GetBusinessRequest{BusinessId: b.ID()})
	if err != nil || biz.GetBusiness().GetQuality().GetReports() != 1 {
		t.Errorf("business after a report: %v, %v; want 1 report", biz, err)
	}

	if err := phone.Block(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	prefs, err := phone.Preferences(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(prefs) != 1 || prefs[0].BusinessID != b.ID() || !prefs[0].Blocked || prefs[0].LastMessageTime.IsZero() {
		t.Fatalf("preferences %+v", prefs)
	}
	found := false
	for _, c := range prefs[0].Consents {
		if c.Category == e2e.Marketing {
			found = c.Consent == client.OptedIn && c.SetBy == heraldv1.Setter_SETTER_RECIPIENT
		}
	}
	if !found {
		t.Errorf("marketing consent not listed as the person's opt-in: %+v", prefs[0].Consents)
	}
	if err := phone.Unblock(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("ok")); err != nil {
		t.Errorf("after unblock: %v", err)
	}

	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	if err := phone.Block(ctx2, b.ID()); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled call: %v, want context.Canceled", err)
	}
}
