package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	alice = "+14155550123"
	bob   = "+442079460018"
	carol = "+14155550177"
)

// TestSendOpensOnEveryDevice: a message sent over real gRPC is sealed for each of
// the recipient's devices, whatever their algorithm, and each opens it.
func TestSendOpensOnEveryDevice(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	tp := newTap(g.conn)
	b := g.business(tp, high)
	phone := g.device(nil, alice, e2e.MLKEM768X25519)
	laptop := g.device(nil, alice, e2e.X25519)

	s, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("1 latte, 4.50 EUR"), client.WithClientMessageID("order-1:receipt"))
	if err != nil {
		t.Fatal(err)
	}
	if s.MessageID == "" || s.ClientMessageID != "order-1:receipt" || s.Duplicate || len(s.DeviceIDs) != 2 {
		t.Fatalf("sent = %+v", s)
	}
	// The body went once, and each envelope is that device's wrap.
	req := tp.callsOf(heraldv1.MessagingService_Send_FullMethodName)[0].req.(*heraldv1.SendRequest).GetMessage()
	if len(req.GetBody()) == 0 || len(req.GetEnvelopes()) != 2 {
		t.Fatalf("sent message: body %d bytes, %d envelopes", len(req.GetBody()), len(req.GetEnvelopes()))
	}
	for _, e := range req.GetEnvelopes() {
		if bytes.Contains(e.GetCiphertext(), req.GetBody()) || e.GetKeyId() == "" {
			t.Errorf("envelope for %s carries the body or no key id", e.GetDeviceId())
		}
	}

	for _, d := range []*client.Device{phone, laptop} {
		m := receiveMessages(t, d, 1)[0]
		if string(m.Body) != "1 latte, 4.50 EUR" || m.ID != s.MessageID || m.BusinessID != b.ID() || m.BusinessName != "Acme" ||
			m.Category != e2e.Transactional || m.Kind != e2e.Receipt || m.ClientMessageID != "order-1:receipt" || m.SentTime.IsZero() {
			t.Errorf("device %s received %+v", d.ID(), m)
		}
		if err := d.Ack(t.Context(), m.ID); err != nil {
			t.Fatal(err)
		}
		quiet(t, d)
	}

	// The same client message id again: the first result, nothing delivered again.
	again, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("1 latte, 4.50 EUR"), client.WithClientMessageID("order-1:receipt"))
	if err != nil || !again.Duplicate || again.MessageID != s.MessageID {
		t.Fatalf("resend = %+v, %v", again, err)
	}
	quiet(t, phone)
}

// TestOutsiderOpensNothing: a device that is not a recipient cannot open any envelope
// it is handed, whether addressed to it or not.
func TestOutsiderOpensNothing(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	b := g.business(nil, high)
	tp := newTap(g.conn)
	phone := g.device(tp, alice, e2e.MLKEM768X25519)
	laptop := g.device(tp, alice, e2e.X25519)
	outsiders := []*client.Device{g.device(nil, bob, e2e.MLKEM768X25519), g.device(nil, bob, e2e.X25519)}

	if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	receiveMessages(t, phone, 1)
	receiveMessages(t, laptop, 1)
	ds := tp.delivered()
	if len(ds) != 2 {
		t.Fatalf("%d deliveries", len(ds))
	}
	for _, o := range outsiders {
		for _, d := range ds {
			// As delivered, without the key id hint, and with the key id of the outsider.
			variants := []*heraldv1.Delivery{d, with(d, func(d *heraldv1.Delivery) { d.KeyId = "" }),
				with(d, func(d *heraldv1.Delivery) { d.KeyId = o.KeyID() })}
			for _, v := range variants {
				m, err := o.Open(v)
				var rej *client.RejectedDeliveryError
				if m != nil || !errors.As(err, &rej) || !errors.Is(err, e2e.ErrNotForThisDevice) {
					t.Errorf("outsider opened a delivery for %s: %v, %v", d.GetMessageId(), m, err)
				}
			}
		}
	}
}

// TestStaleDevicesResendOnce: when the recipient's devices changed since the cached
// lookup (a new device, a rotated key), Send looks up again and resends once with the
// same client message id.
func TestStaleDevicesResendOnce(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	tp := newTap(g.conn)
	b := g.business(tp, high)
	phone := g.device(nil, alice, e2e.X25519)

	if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("one")); err != nil {
		t.Fatal(err)
	}
	laptop := g.device(nil, alice, e2e.X25519)

	s, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("two"), client.WithClientMessageID("two"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.DeviceIDs) != 2 || !slices.Contains(s.DeviceIDs, laptop.ID()) {
		t.Errorf("sealed for %v, want both devices", s.DeviceIDs)
	}
	sends := tp.callsOf(heraldv1.MessagingService_Send_FullMethodName)
	if n := len(tp.callsOf(heraldv1.MessagingService_LookupRecipient_FullMethodName)); len(sends) != 3 || n != 2 {
		t.Fatalf("%d sends and %d lookups, want 3 and 2 (one cached send, stale, refreshed)", len(sends), n)
	}
	stale := sends[1].resp.(*heraldv1.SendResponse).GetResult()
	if stale.GetOutcome() != heraldv1.Outcome_OUTCOME_STALE_DEVICES || !slices.Equal(stale.GetMissingDeviceIds(), []string{laptop.ID()}) {
		t.Errorf("second send = %v, want STALE_DEVICES missing the laptop", stale)
	}
	if a, b := sends[1].req.(*heraldv1.SendRequest), sends[2].req.(*heraldv1.SendRequest); a.GetMessage().GetClientMessageId() != "two" ||
		b.GetMessage().GetClientMessageId() != "two" {
		t.Errorf("the resend changed the client message id")
	}
	if m := receiveMessages(t, laptop, 1)[0]; string(m.Body) != "two" {
		t.Errorf("laptop received %q", m.Body)
	}

	// A rotated key: a message queued before still opens with the retired key, and
	// the next Send, sealed to the cached old key, is resent to the new one.
	if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("three"), client.WithClientMessageID("three")); err != nil {
		t.Fatal(err)
	}
	oldKey := phone.KeyID()
	if err := phone.RotateKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	if phone.KeyID() == oldKey {
		t.Fatal("the key did not change")
	}
	if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("four"), client.WithClientMessageID("four")); err != nil {
		t.Fatal(err)
	}
	sends = tp.callsOf(heraldv1.MessagingService_Send_FullMethodName)
	if r := sends[len(sends)-2].resp.(*heraldv1.SendResponse).GetResult(); !slices.Equal(r.GetRetiredKeyDeviceIds(), []string{phone.ID()}) {
		t.Errorf("send to the old key = %v, want STALE_DEVICES naming the phone's retired key", r)
	}
	var bodies []string
	for _, m := range receiveMessages(t, phone, 4) {
		bodies = append(bodies, string(m.Body))
	}
	if !slices.Equal(bodies, []string{"one", "two", "three", "four"}) {
		t.Errorf("phone received %q", bodies)
	}
}

// TestStatusesResumeAfterTheStreamIsCut: the gateway restarts under a running
// Statuses; it reconnects and goes on after the last event it yielded, and a new
// Business started from the saved cursor sees only what came after.
func TestStatusesResumeAfterTheStreamIsCut(t *testing.T) {
	g := startGateway(t)
	tp := newTap(g.conn)
	b := g.business(tp, high, client.WithRetry(4, 50*time.Millisecond))
	phone := g.device(nil, alice, e2e.X25519, client.WithRetry(4, 50*time.Millisecond))

	deliver := func(id string) {
		t.Helper()
		if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte(id), client.WithClientMessageID(id)); err != nil {
			t.Fatal(err)
		}
		m := receiveMessages(t, phone, 1)[0]
		if err := phone.Ack(t.Context(), m.ID); err != nil {
			t.Fatal(err)
		}
	}
	deliver("m1")

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var events []client.StatusEvent
	restarted := false
	for e, err := range b.Statuses(ctx) {
		if err != nil {
			t.Fatalf("after %d events: %v", len(events), err)
		}
		events = append(events, e)
		if !restarted && e.ClientMessageID == "m1" && e.Status == client.StatusDelivered {
			restarted = true
			g.restart()
			deliver("m2")
		}
		if e.ClientMessageID == "m2" && e.Status == client.StatusDelivered {
			break
		}
	}
	var got []string
	seen := map[string]bool{}
	for _, e := range events {
		if seen[e.Cursor] {
			t.Errorf("event %s repeated", e.Cursor)
		}
		seen[e.Cursor] = true
		got = append(got, fmt.Sprintf("%s %s", e.ClientMessageID, e.Status))
	}
	want := []string{"m1 STATUS_ACCEPTED", "m1 STATUS_DELIVERED", "m2 STATUS_ACCEPTED", "m2 STATUS_DELIVERED"}
	if !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if n := len(tp.callsOf(heraldv1.MessagingService_StreamStatus_FullMethodName)); n < 2 {
		t.Errorf("the stream was opened %d times; the restart should have cut it", n)
	}
	if b.Cursor() != events[len(events)-1].Cursor {
		t.Errorf("Cursor() = %s, want the last event's", b.Cursor())
	}

	// A new process, resuming from the saved cursor.
	deliver("m3")
	resumed := client.NewBusiness(g.conn, b.ID(), businessKey(t, g, b), nil, client.WithCursor(b.Cursor()))
	for e, err := range resumed.Statuses(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if e.ClientMessageID != "m3" {
			t.Fatalf("resumed at %s %s, want m3's events only", e.ClientMessageID, e.Status)
		}
		if e.Status == client.StatusDelivered {
			break
		}
	}
}

// businessKey issues another API key for b's business.
func businessKey(t testing.TB, g *gateway, b *client.Business) string {
	t.Helper()
	k, err := g.admin.IssueApiKey(g.adminCtx(), &heraldv1.IssueApiKeyRequest{BusinessId: b.ID()})
	if err != nil {
		t.Fatal(err)
	}
	return k.ApiKey
}

// TestRetryInfoHonoured: a business allowed one message a second sends two at once;
// both succeed, the second only after the wait the gateway's RetryInfo asked for.
func TestRetryInfoHonoured(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	tp := newTap(g.conn)
	b := g.business(tp, limits{1, 1})
	g.device(nil, alice, e2e.X25519)

	for i := range 2 {
		if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("hi"), client.WithClientMessageID(fmt.Sprint("m", i))); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	sends := tp.callsOf(heraldv1.MessagingService_Send_FullMethodName)
	waited := 0
	for i, c := range sends {
		if status.Code(c.err) != codes.ResourceExhausted {
			continue
		}
		delay := retryDelay(t, c.err)
		if i+1 >= len(sends) {
			t.Fatal("RESOURCE_EXHAUSTED was not retried")
		}
		if gap := sends[i+1].start.Sub(c.end); gap < delay {
			t.Errorf("retried after %s; RetryInfo asked for %s", gap, delay)
		}
		waited++
	}
	if waited == 0 {
		t.Fatalf("no send was rate limited: %d sends", len(sends))
	}
}

func retryDelay(t testing.TB, err error) time.Duration {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	t.Fatalf("RESOURCE_EXHAUSTED without RetryInfo: %v", err)
	return 0
}

// TestTypedErrors: each way a send can fail is a typed error that callers branch on
// with errors.As, and the gRPC status stays reachable.
func TestTypedErrors(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	b := g.business(nil, high)
	phone := g.device(nil, alice, e2e.X25519)
	g.device(nil, bob, e2e.X25519)
	ctx := t.Context()
	send := func(b *client.Business, to string, cat e2e.Category, kind e2e.Kind) error {
		_, err := b.Send(ctx, to, cat, kind, []byte("x"))
		return err
	}

	if err := phone.Block(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		err  error
		want heraldv1.Outcome
	}{
		{"blocked", send(b, alice, e2e.Transactional, e2e.Receipt), heraldv1.Outcome_OUTCOME_BLOCKED},
		{"marketing without opt-in", send(b, bob, e2e.Marketing, e2e.Offer), heraldv1.Outcome_OUTCOME_NOT_OPTED_IN},
		{"nobody there", send(b, carol, e2e.Transactional, e2e.Receipt), heraldv1.Outcome_OUTCOME_UNKNOWN_RECIPIENT},
	} {
		var rej *client.RejectedError
		if !errors.As(tt.err, &rej) || rej.Outcome != tt.want || rej.Recipient == "" {
			t.Errorf("%s: %v, want a *RejectedError with %s", tt.name, tt.err, tt.want)
		}
	}

	err := send(b, "+1415555", e2e.Transactional, e2e.Receipt)
	var inv *client.InvalidArgumentError
	if !errors.As(err, &inv) || len(inv.Violations) == 0 || inv.Violations[0].Field != "recipient" || status.Code(err) != codes.InvalidArgument {
		t.Errorf("invalid number: %v, want an *InvalidArgumentError naming recipient", err)
	}
	// Kind and category that do not belong together reach Send, which refuses them.
	err = send(b, bob, e2e.Transactional, e2e.Offer)
	if !errors.As(err, &inv) || len(inv.Violations) == 0 || inv.Violations[0].Field != "message.kind" {
		t.Errorf("offer as transactional: %v, want an *InvalidArgumentError naming message.kind", err)
	}

	signer, _ := e2e.GenerateSigningKey()
	bad := client.NewBusiness(g.conn, b.ID(), "hk_nope_nope", signer)
	err = send(bad, bob, e2e.Transactional, e2e.Receipt)
	var se *client.StatusError
	if !errors.As(err, &se) || se.Code != codes.Unauthenticated || se.Reason != "UNAUTHENTICATED" || status.Code(err) != codes.Unauthenticated {
		t.Errorf("bad API key: %v, want a *StatusError UNAUTHENTICATED", err)
	}
	// A stream does not reconnect over it either: it yields the error and ends.
	for _, err := range bad.Statuses(ctx) {
		if !errors.As(err, &se) || se.Code != codes.Unauthenticated {
			t.Errorf("statuses with a bad API key: %v, want a *StatusError UNAUTHENTICATED", err)
		}
	}

	slow := g.business(nil, limits{1, 1}, client.WithRetry(1, 0))
	if err := send(slow, bob, e2e.Transactional, e2e.Receipt); err != nil {
		t.Fatal(err)
	}
	err = send(slow, bob, e2e.Transactional, e2e.Receipt)
	var rl *client.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter <= 0 || status.Code(err) != codes.ResourceExhausted {
		t.Errorf("over the rate without retries: %v, want a *RateLimitedError with RetryAfter", err)
	}
	// With retries allowed but a deadline too close for the wait, the error comes at
	// once rather than a deadline error later.
	patient := client.NewBusiness(g.conn, slow.ID(), businessKey(t, g, slow), signer)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := patient.Send(short, bob, e2e.Transactional, e2e.Receipt, []byte("x")); !errors.As(err, &rl) {
		t.Errorf("over the rate with a near deadline: %v, want a *RateLimitedError", err)
	}
}

// TestUnavailable: with the store down the gateway does nothing and says UNAVAILABLE;
// the SDK retries, then returns an *UnavailableError.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	tp := newTap(g.conn)
	b := g.business(tp, high, client.WithRetry(3, 10*time.Millisecond))
	g.device(nil, alice, e2e.X25519)
	if _, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("x")); err != nil {
		t.Fatal(err)
	}
	g.rs.Stop()
	_, err := b.Send(t.Context(), alice, e2e.Transactional, e2e.Receipt, []byte("x"))
	var un *client.UnavailableError
	if !errors.As(err, &un) || status.Code(err) != codes.Unavailable {
		t.Fatalf("store down: %v, want an *UnavailableError", err)
	}
	if n := len(tp.callsOf(heraldv1.MessagingService_Send_FullMethodName)); n != 1+3 {
		t.Errorf("%d Send calls, want 1 and then 3 tries", n)
	}
}

// TestBroadcast: one body sealed once for every device of every recipient, sent in
// one batch; results in order; each device opens its copy.
func TestBroadcast(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	tp := newTap(g.conn)
	b := g.business(tp, high)
	phone := g.device(nil, alice, e2e.MLKEM768X25519)
	laptop := g.device(nil, alice, e2e.X25519)
	bobPhone := g.device(nil, bob, e2e.X25519)
	if err := bobPhone.SetConsent(t.Context(), b.ID(), e2e.Marketing, client.OptedIn); err != nil {
		t.Fatal(err)
	}

	to := []string{alice, carol, bob, "+1415555"}
	rs, err := b.Broadcast(t.Context(), to, e2e.Marketing, e2e.Offer, []byte("2 for 1 today"), client.WithClientMessageID("promo-7"))
	if err != nil {
		t.Fatal(err)
	}
	var rej *client.RejectedError
	var inv *client.InvalidArgumentError
	if len(rs) != 4 || rs[0].Recipient != alice || rs[3].Recipient != "+1415555" {
		t.Fatalf("results %+v, want one per recipient in order", rs)
	}
	// Alice never opted in to marketing: rejected. Carol has no device. Bob opted in.
	if !errors.As(rs[0].Err, &rej) || rej.Outcome != heraldv1.Outcome_OUTCOME_NOT_OPTED_IN {
		t.Errorf("alice: %+v, want NOT_OPTED_IN", rs[0])
	}
	if !errors.As(rs[1].Err, &rej) || rej.Outcome != heraldv1.Outcome_OUTCOME_UNKNOWN_RECIPIENT {
		t.Errorf("carol: %+v, want UNKNOWN_RECIPIENT", rs[1])
	}
	if rs[2].Sent == nil || rs[2].Err != nil || rs[2].Sent.ClientMessageID != "promo-7" {
		t.Errorf("bob: %+v, want sent", rs[2])
	}
	if !errors.As(rs[3].Err, &inv) {
		t.Errorf("bad number: %+v, want an *InvalidArgumentError", rs[3])
	}
	m := receiveMessages(t, bobPhone, 1)[0]
	if string(m.Body) != "2 for 1 today" || m.ID != rs[2].Sent.MessageID {
		t.Errorf("bob received %+v", m)
	}
	if err := bobPhone.Ack(t.Context(), m.ID); err != nil {
		t.Fatal(err)
	}

	// Transactional to both people: one seal for all three devices, one batch.
	rs, err = b.Broadcast(t.Context(), []string{alice, bob}, e2e.Transactional, e2e.AccountUpdate, []byte("new terms"))
	if err != nil {
		t.Fatal(err)
	}
	batches := tp.callsOf(heraldv1.MessagingService_SendBatch_FullMethodName)
	msgs := batches[len(batches)-1].req.(*heraldv1.SendBatchRequest).GetMessages()
	if len(msgs) != 2 || !bytes.Equal(msgs[0].GetBody(), msgs[1].GetBody()) || len(msgs[0].GetEnvelopes())+len(msgs[1].GetEnvelopes()) != 3 {
		t.Fatalf("batch of %d messages; want 2 sharing one body, 3 envelopes in all", len(msgs))
	}
	for i, d := range []*client.Device{phone, laptop, bobPhone} {
		m := receiveMessages(t, d, 1)[0]
		want := rs[0].Sent.MessageID
		if i == 2 {
			want = rs[1].Sent.MessageID
		}
		if string(m.Body) != "new terms" || m.ID != want {
			t.Errorf("device %d received %+v", i, m)
		}
	}
}

// TestBroadcastOverTheRate: a batch partly over the business's rate gets the rest
// through after the gateway's retry_after.
func TestBroadcastOverTheRate(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	tp := newTap(g.conn)
	b := g.business(tp, limits{2, 2})
	to := []string{alice, bob, carol}
	for _, p := range to {
		g.device(nil, p, e2e.X25519)
	}
	rs, err := b.Broadcast(t.Context(), to, e2e.Transactional, e2e.DeliveryStatus, []byte("on its way"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Err != nil || r.Sent == nil {
			t.Errorf("%s: %v", r.Recipient, r.Err)
		}
	}
	batches := tp.callsOf(heraldv1.MessagingService_SendBatch_FullMethodName)
	if len(batches) < 2 {
		t.Fatalf("%d batches; the rate should have refused part of the first", len(batches))
	}
	first := batches[0].resp.(*heraldv1.SendBatchResponse).GetResults()
	var retryAfter time.Duration
	limited := 0
	for _, r := range first {
		if r.GetOutcome() == heraldv1.Outcome_OUTCOME_RATE_LIMITED {
			limited++
			retryAfter = max(retryAfter, r.GetRetryAfter().AsDuration())
		}
	}
	if limited == 0 || len(batches[1].req.(*heraldv1.SendBatchRequest).GetMessages()) != limited {
		t.Errorf("first batch: %d rate limited; second batch resent %d", limited, len(batches[1].req.(*heraldv1.SendBatchRequest).GetMessages()))
	}
	if gap := batches[1].start.Sub(batches[0].end); gap < retryAfter {
		t.Errorf("resent after %s; retry_after was %s", gap, retryAfter)
	}
}

// with returns a copy of d changed by f.
func with(d *heraldv1.Delivery, f func(*heraldv1.Delivery)) *heraldv1.Delivery {
	c := cloneDelivery(d)
	f(c)
	return c
}
