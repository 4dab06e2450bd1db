package server

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

const (
	alice = "+14155550123"
	bob   = "+442079460018"
)

var (
	tx   = heraldv1.Category_CATEGORY_TRANSACTIONAL
	mk   = heraldv1.Category_CATEGORY_MARKETING
	rcpt = heraldv1.Kind_KIND_RECEIPT
	offr = heraldv1.Kind_KIND_OFFER
)

// statusStream collects a business's status events.
type statusStream struct {
	ch chan *heraldv1.StatusEvent
}

func (g *gateway) statuses(key, cursor string) *statusStream {
	g.t.Helper()
	ctx, cancel := context.WithCancel(as(key))
	g.t.Cleanup(cancel)
	st, err := g.messaging.StreamStatus(ctx, &heraldv1.StreamStatusRequest{Cursor: cursor})
	if err != nil {
		g.t.Fatal(err)
	}
	s := &statusStream{ch: make(chan *heraldv1.StatusEvent, 1000)}
	go func() {
		defer close(s.ch)
		for {
			e, err := st.Recv()
			if err != nil {
				return
			}
			s.ch <- e
		}
	}()
	return s
}

// waitFor reads events until one matches, returning everything read.
func (s *statusStream) waitFor(t *testing.T, id string, want heraldv1.Status, device string) []*heraldv1.StatusEvent {
	t.Helper()
	var seen []*heraldv1.StatusEvent
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-s.ch:
			if !ok {
				t.Fatalf("status stream ended before %s %s", want, id)
			}
			seen = append(seen, e)
			if e.MessageId == id && e.Status == want && e.DeviceId == device {
				return seen
			}
		case <-deadline:
			t.Fatalf("no %s event for %s on %q within 10s; saw %v", want, id, device, seen)
		}
	}
}

// TestStory walks the whole path over real gRPC on a real store: a business, a
// person with two devices, sends of both categories, consent, block, acks, status
// events, idempotent resends, an offline device catching up, and stale envelopes.
func TestStory(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	biz, key := g.newBusiness("Acme Coffee")
	phone, tablet := g.register(alice), g.register("+1 (415) 555-0123") // same person, another spelling

	look, err := g.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: alice, Category: tx})
	if err != nil {
		t.Fatal(err)
	}
	if look.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED || len(look.Devices) != 2 {
		t.Fatalf("lookup = %v, want ACCEPTED with 2 devices", look)
	}

	events := g.statuses(key, "")
	rPhone, rTablet := g.receive(phone), g.receive(tablet)

	// A receipt reaches both devices.
	r := g.send(key, msg(alice, tx, rcpt, "order-1", "Your latte: $4.50", phone, tablet))
	if r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED || r.MessageId == "" {
		t.Fatalf("receipt: %v", r)
	}
	for _, rc := range []*receiver{rPhone, rTablet} {
		d := rc.next()
		if d.MessageId != r.MessageId || d.BusinessId != biz || d.BusinessDisplayName != "Acme Coffee" ||
			d.Category != tx || d.Kind != rcpt || d.ClientMessageId != "order-1" {
			t.Fatalf("delivery = %v", d)
		}
		if !strings.HasSuffix(open(d.Ciphertext), ":Your latte: $4.50") {
			t.Fatalf("ciphertext = %q", open(d.Ciphertext))
		}
	}
	events.waitFor(t, r.MessageId, heraldv1.Status_STATUS_ACCEPTED, "")

	// Marketing needs an opt-in.
	offer := msg(alice, mk, offr, "offer-1", "2 for 1 today", phone, tablet)
	if r := g.send(key, offer); r.Outcome != heraldv1.Outcome_OUTCOME_NOT_OPTED_IN {
		t.Fatalf("offer before opt-in: %v", r)
	}
	if _, err := g.recipient.SetConsent(as(phone.token), &heraldv1.SetConsentRequest{BusinessId: biz, Category: mk,
		Consent: heraldv1.Consent_CONSENT_OPTED_IN}); err != nil {
		t.Fatal(err)
	}
	ro := g.send(key, offer)
	if ro.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("offer after opt-in: %v", ro)
	}
	if d := rPhone.next(); d.MessageId != ro.MessageId {
		t.Fatalf("phone got %s, want the offer", d.MessageId)
	}
	rTablet.next()

	// A block stops everything, and LookupRecipient reveals no keys.
	if _, err := g.recipient.Block(as(tablet.token), &heraldv1.BlockRequest{BusinessId: biz}); err != nil {
		t.Fatal(err)
	}
	if r := g.send(key, msg(alice, tx, rcpt, "order-2", "blocked receipt", phone, tablet)); r.Outcome != heraldv1.Outcome_OUTCOME_BLOCKED || r.MessageId != "" {
		t.Fatalf("send while blocked: %v", r)
	}
	look, err = g.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: alice, Category: tx})
	if err != nil || look.Outcome != heraldv1.Outcome_OUTCOME_BLOCKED || len(look.Devices) != 0 {
		t.Fatalf("lookup while blocked = %v, %v; want BLOCKED and no devices", look, err)
	}
	rPhone.none(200 * time.Millisecond)

	// Unblocked, a receipt gets through again; the tablet is offline meanwhile.
	rTablet.cancel()
	if _, err := g.recipient.Unblock(as(phone.token), &heraldv1.UnblockRequest{BusinessId: biz}); err != nil {
		t.Fatal(err)
	}
	r3 := g.send(key, msg(alice, tx, rcpt, "order-3", "after unblock", phone, tablet))
	if r3.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("after unblock: %v", r3)
	}
	if d := rPhone.next(); d.MessageId != r3.MessageId {
		t.Fatalf("phone got %s, want %s", d.MessageId, r3.MessageId)
	}

	// A resend with the same client_message_id returns the first result and is not
	// delivered again.
	again := g.send(key, msg(alice, tx, rcpt, "order-3", "after unblock", phone, tablet))
	if again.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED || !again.Duplicate || again.MessageId != r3.MessageId {
		t.Fatalf("resend = %v, want the first result marked duplicate", again)
	}
	rPhone.none(300 * time.Millisecond)

	// Acks produce DELIVERED and READ.
	if _, err := g.recipient.Ack(as(phone.token), &heraldv1.AckRequest{MessageIds: []string{r.MessageId, ro.MessageId, r3.MessageId}}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.recipient.Ack(as(phone.token), &heraldv1.AckRequest{MessageIds: []string{r.MessageId}, Read: true}); err != nil {
		t.Fatal(err)
	}
	events.waitFor(t, r.MessageId, heraldv1.Status_STATUS_DELIVERED, phone.id)
	seen := events.waitFor(t, r.MessageId, heraldv1.Status_STATUS_READ, phone.id)

	// The tablet comes back: everything it has not acked arrives, oldest first, once.
	rTablet = g.receive(tablet)
	var got []string
	for range 3 {
		got = append(got, rTablet.next().MessageId)
	}
	if want := []string{r.MessageId, ro.MessageId, r3.MessageId}; !slices.Equal(got, want) {
		t.Fatalf("tablet after reconnect got %v, want %v", got, want)
	}
	rTablet.none(300 * time.Millisecond)
	// The phone acked everything, so a new stream of it gets nothing.
	g.receive(phone).none(300 * time.Millisecond)

	// Resuming from a cursor gives exactly the events after it.
	last := seen[len(seen)-1]
	if _, err := g.recipient.Ack(as(tablet.token), &heraldv1.AckRequest{MessageIds: []string{r3.MessageId}}); err != nil {
		t.Fatal(err)
	}
	resumed := g.statuses(key, last.Cursor)
	first := resumed.waitFor(t, r3.MessageId, heraldv1.Status_STATUS_DELIVERED, tablet.id)
	for _, e := range first {
		if e.Cursor == last.Cursor || (e.MessageId == last.MessageId && e.Status == last.Status && e.DeviceId == last.DeviceId) {
			t.Fatalf("resumed stream repeated the event at its cursor: %v", e)
		}
	}
	if len(first) != 1 {
		t.Fatalf("resumed stream gave %v, want only the tablet's DELIVERED", first)
	}

	// Envelopes for the wrong devices: STALE_DEVICES with the ids to fix.
	stale := g.send(key, msg(alice, tx, rcpt, "order-4", "stale", phone, device{id: "dzzzzzzzzzzzzz"}))
	if stale.Outcome != heraldv1.Outcome_OUTCOME_STALE_DEVICES ||
		!slices.Equal(stale.MissingDeviceIds, []string{tablet.id}) || !slices.Equal(stale.UnknownDeviceIds, []string{"dzzzzzzzzzzzzz"}) {
		t.Fatalf("stale send = %v", stale)
	}
	// …and since nothing was admitted, the fixed resend with the same id goes through.
	if r := g.send(key, msg(alice, tx, rcpt, "order-4", "fixed", phone, tablet)); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED || r.Duplicate {
		t.Fatalf("fixed resend = %v", r)
	}

	// A number nobody registered.
	if r := g.send(key, msg(bob, tx, rcpt, "bob-1", "hi", phone)); r.Outcome != heraldv1.Outcome_OUTCOME_UNKNOWN_RECIPIENT {
		t.Fatalf("send to unregistered = %v", r)
	}

	// Preferences show the business, its name and who set what.
	prefs, err := g.recipient.ListPreferences(as(tablet.token), &heraldv1.ListPreferencesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(prefs.Businesses) != 1 || prefs.Businesses[0].DisplayName != "Acme Coffee" || prefs.Businesses[0].Blocked ||
		prefs.Businesses[0].LastMessageTime == nil {
		t.Fatalf("preferences = %v", prefs)
	}
	for _, c := range prefs.Businesses[0].Consents {
		if c.Category == mk && (c.Consent != heraldv1.Consent_CONSENT_OPTED_IN || c.SetBy != heraldv1.Setter_SETTER_RECIPIENT) {
			t.Fatalf("marketing consent = %v", c)
		}
	}

	// Redis holds neither the phone numbers nor any plaintext.
	secrets := []string{alice, strings.TrimPrefix(alice, "+"), "4155550123", bob, strings.TrimPrefix(bob, "+"),
		"Your latte", "2 for 1 today", "after unblock", "blocked receipt"}
	for k, v := range snapshot(t, g.rdb) {
		for _, s := range secrets {
			if strings.Contains(k, s) || strings.Contains(v, s) {
				t.Errorf("Redis key %s holds %q", k, s)
			}
		}
	}
}
