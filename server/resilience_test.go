package server

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/redistest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestRedisDownFailsClosedAndRecovers stops Redis mid-way: calls fail with
// UNAVAILABLE and nothing is admitted; when Redis returns (with its data, as with
// appendfsync always), the same gateway works again by itself and nothing that was
// acknowledged is lost.
func TestRedisDownFailsClosedAndRecovers(t *testing.T) {
	t.Parallel()
	if redistest.Memory() {
		t.Skip("needs a redis-server that can be stopped and restarted")
	}
	rs := redistest.StartDurable(t)
	g := startGatewayOn(t, rs)
	_, key := g.newBusiness("Acme")
	phone := g.register(alice)
	before := g.send(key, msg(alice, tx, rcpt, "before", "hi", phone))

	rs.Stop()
	ctx, cancel := context.WithTimeout(as(key), 10*time.Second)
	defer cancel()
	_, err := g.messaging.Send(ctx, &heraldv1.SendRequest{Message: msg(alice, tx, rcpt, "during", "hi", phone)})
	requireCode(t, err, codes.Unavailable, "")
	_, err = g.recipient.Block(as(phone.token), &heraldv1.BlockRequest{BusinessId: "biz_x"})
	if c := codes.Unavailable; err == nil || (codeOf(err) != c && codeOf(err) != codes.Unauthenticated) {
		t.Fatalf("block while Redis is down: %v", err)
	}
	waitHealth(t, g, grpc_health_v1.HealthCheckResponse_NOT_SERVING)

	rs.Restart(t)
	waitHealth(t, g, grpc_health_v1.HealthCheckResponse_SERVING)
	after := g.send(key, msg(alice, tx, rcpt, "after", "hi", phone))
	if after.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("after recovery: %v", after)
	}
	rc := g.receive(phone)
	if a, b := rc.next(), rc.next(); a.MessageId != before.MessageId || b.MessageId != after.MessageId {
		t.Fatalf("got %s, %s; want the message from before the outage, then the one after", a.MessageId, b.MessageId)
	}
	rc.none(300 * time.Millisecond) // "during" was never admitted
}

func waitHealth(t *testing.T, g *gateway, want grpc_health_v1.HealthCheckResponse_ServingStatus) {
	t.Helper()
	h := grpc_health_v1.NewHealthClient(g.conn)
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := h.Check(context.Background(), &grpc_health_v1.HealthCheckRequest{Service: "herald.v1.MessagingService"})
		if err == nil && r.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health = %v, %v; want %v", r, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestExpiredMessagesAreDroppedAndReported moves the clock past a message's ttl:
// the offline device never receives it, and the business sees STATUS_EXPIRED.
func TestExpiredMessagesAreDroppedAndReported(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := startGateway(t, withClock(c))
	_, key := g.newBusiness("Acme")
	phone := g.register(alice)
	short := msg(alice, tx, heraldv1.Kind_KIND_DELIVERY_STATUS, "short", "out for delivery", phone)
	short.Ttl = durationpb.New(time.Minute)
	rs := g.send(key, short)
	rl := g.send(key, msg(alice, tx, rcpt, "long", "receipt", phone))
	events := g.statuses(key, "")

	c.Add(2 * time.Minute)
	rc := g.receive(phone)
	if d := rc.next(); d.MessageId != rl.MessageId {
		t.Fatalf("got %s, want only the unexpired %s", d.MessageId, rl.MessageId)
	}
	rc.none(200 * time.Millisecond)
	events.waitFor(t, rs.MessageId, heraldv1.Status_STATUS_EXPIRED, phone.id)

	// An ack of the expired message is reported as unknown and changes nothing.
	r, err := g.recipient.Ack(as(phone.token), &heraldv1.AckRequest{MessageIds: []string{rs.MessageId, rl.MessageId}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.UnknownMessageIds) != 1 || r.UnknownMessageIds[0] != rs.MessageId {
		t.Fatalf("unknown = %v, want the expired one", r.UnknownMessageIds)
	}
}

// TestConsentPolicy checks the policy table: a business can record consent, but the
// person's own choice wins whatever the order.
func TestConsentPolicy(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	biz, key := g.newBusiness("Acme")
	phone := g.register(alice)
	record := func(cat heraldv1.Category, v heraldv1.Consent) *heraldv1.RecordConsentResponse {
		t.Helper()
		r, err := g.messaging.RecordConsent(as(key), &heraldv1.RecordConsentRequest{Recipient: alice, Category: cat, Consent: v,
			Evidence: &heraldv1.ConsentEvidence{Source: "checkout-form", Reference: "form-77", CollectedTime: nowPB()}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	set := func(cat heraldv1.Category, v heraldv1.Consent) {
		t.Helper()
		if _, err := g.recipient.SetConsent(as(phone.token), &heraldv1.SetConsentRequest{BusinessId: biz, Category: cat, Consent: v}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	outcome := func(cat heraldv1.Category) heraldv1.Outcome {
		t.Helper()
		n++
		kind := rcpt
		if cat == mk {
			kind = offr
		}
		return g.send(key, msg(alice, cat, kind, "c"+string(rune('a'+n)), "x", phone)).Outcome
	}
	in, out := heraldv1.Consent_CONSENT_OPTED_IN, heraldv1.Consent_CONSENT_OPTED_OUT

	// A business-recorded opt-in opens marketing when the person made no choice.
	if r := record(mk, in); r.EffectiveConsent != in || r.OverriddenByRecipient {
		t.Fatalf("record opt-in = %v", r)
	}
	if o := outcome(mk); o != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("marketing after business opt-in: %v", o)
	}
	// The person opts out: that wins, and a new business record cannot undo it.
	set(mk, out)
	if o := outcome(mk); o != heraldv1.Outcome_OUTCOME_OPTED_OUT {
		t.Fatalf("marketing after the person opted out: %v", o)
	}
	if r := record(mk, in); r.EffectiveConsent != out || !r.OverriddenByRecipient {
		t.Fatalf("record over the person's opt-out = %v, want overridden", r)
	}
	if o := outcome(mk); o != heraldv1.Outcome_OUTCOME_OPTED_OUT {
		t.Fatalf("marketing after the business tried to override: %v", o)
	}
	// Transactional is allowed by default; a business-recorded opt-out stops it.
	if o := outcome(tx); o != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("transactional by default: %v", o)
	}
	record(tx, out)
	if o := outcome(tx); o != heraldv1.Outcome_OUTCOME_OPTED_OUT {
		t.Fatalf("transactional after a business-recorded opt-out: %v", o)
	}
	// The person's own opt-in beats the business's record.
	set(tx, in)
	if o := outcome(tx); o != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("transactional after the person opted in: %v", o)
	}
	// The preferences show who set what, with the evidence.
	prefs, err := g.recipient.ListPreferences(as(phone.token), &heraldv1.ListPreferencesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range prefs.Businesses[0].Consents {
		if c.SetBy != heraldv1.Setter_SETTER_RECIPIENT || c.UpdateTime == nil {
			t.Fatalf("consent %v: want set by the recipient", c)
		}
	}
}

// TestShutdownEndsStreamsAndLosesNothing shuts a gateway down under an open Receive:
// the stream ends cleanly, and the unacked delivery is there for the device on
// another gateway.
func TestShutdownEndsStreamsAndLosesNothing(t *testing.T) {
	t.Parallel()
	a := startGateway(t)
	b := startGatewayOn(t, a.redis)
	_, key := a.newBusiness("Acme")
	phone := a.register(alice)
	ctx, cancel := context.WithCancel(as(phone.token))
	defer cancel()
	st, err := a.recipient.Receive(ctx, &heraldv1.ReceiveRequest{})
	if err != nil {
		t.Fatal(err)
	}
	r := a.send(key, msg(alice, tx, rcpt, "s-1", "hi", phone))
	if d, err := st.Recv(); err != nil || d.GetDelivery().GetMessageId() != r.MessageId {
		t.Fatalf("recv = %v, %v", d, err)
	}
	done := make(chan struct{})
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		a.srv.Shutdown(sctx)
		close(done)
	}()
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("stream ended with %v, want a clean end (EOF)", err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if d := b.receive(phone).next(); d.MessageId != r.MessageId {
		t.Fatalf("after shutdown the other gateway delivered %s, want %s", d.MessageId, r.MessageId)
	}
}

// TestExpiryIsReportedWithoutTheDevice: a device that never comes back still gets its
// undelivered messages reported STATUS_EXPIRED, by the gateways' sweep; the other
// device, which acked in time, is not reported.
func TestExpiryIsReportedWithoutTheDevice(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := startGateway(t, withClock(c), func(c *Config) { c.ExpirySweep = 50 * time.Millisecond })
	_, key := g.newBusiness("Acme")
	phone, lost := g.register(alice), g.register(alice)
	m := msg(alice, tx, heraldv1.Kind_KIND_DELIVERY_STATUS, "short", "out for delivery", phone, lost)
	m.Ttl = durationpb.New(time.Minute)
	r := g.send(key, m)
	if _, err := g.recipient.Ack(as(phone.token), &heraldv1.AckRequest{MessageIds: []string{r.MessageId}}); err != nil {
		t.Fatal(err)
	}
	events := g.statuses(key, "")
	events.waitFor(t, r.MessageId, heraldv1.Status_STATUS_DELIVERED, phone.id)
	c.Add(2 * time.Minute)
	seen := events.waitFor(t, r.MessageId, heraldv1.Status_STATUS_EXPIRED, lost.id)
	for _, e := range seen {
		if e.Status == heraldv1.Status_STATUS_EXPIRED && e.DeviceId == phone.id {
			t.Fatalf("the device that acked was reported expired: %v", e)
		}
	}
	// When the lost device does come back, there is nothing for it.
	g.receive(lost).none(300 * time.Millisecond)
}

// TestStalledRedisAnswersOutcomeUnknown: Redis stalls past the gateway's read
// timeout while a Send's admission script waits in its socket, and runs it when it
// wakes. The Send cannot know whether it ran, and says so; the retry with the same
// client_message_id returns the message admitted meanwhile, delivered once.
func TestStalledRedisAnswersOutcomeUnknown(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	// A clock that stands still keeps the API key, the limits and the rate tokens the
	// first Send loads, so that the stall meets the admission script itself.
	g := startGatewayOn(t, rs, withClock(newClock()))
	_, key := g.newBusiness("Acme")
	phone := g.register(alice)
	g.send(key, msg(alice, tx, rcpt, "warm", "hi", phone)) // caches, rate tokens and scripts ready
	// Open connections to spare, so that the Send writes its script on one (a new
	// connection's handshake would stall before the script is sent, and the stall
	// would then be one where nothing was sent at all).
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() { g.srv.cfg.Redis.BLPop(context.Background(), 100*time.Millisecond, "nothing") })
	}
	wg.Wait()

	rs.Pause(t)
	ctx, cancel := context.WithTimeout(as(key), 30*time.Second)
	defer cancel()
	_, err := g.messaging.Send(ctx, &heraldv1.SendRequest{Message: msg(alice, tx, rcpt, "stalled", "hi", phone)})
	rs.Resume(t)
	requireCode(t, err, codes.Unavailable, "")
	if r := reasonOf(err); r != "OUTCOME_UNKNOWN" {
		t.Fatalf("Send during the stall: %v with reason %q, want OUTCOME_UNKNOWN", err, r)
	}
	if m := grpcstatus.Convert(err).Message(); strings.Contains(m, "nothing was") {
		t.Fatalf("Send during the stall claims %q", m)
	}

	again := g.send(key, msg(alice, tx, rcpt, "stalled", "hi", phone))
	if again.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED || !again.Duplicate {
		t.Fatalf("retry after the stall: %v; want the message the stalled call admitted (a duplicate)", again)
	}
	// The retry completed what the failed call could not: the ACCEPTED event goes out
	// now, not when the device next shows up.
	g.statuses(key, "").waitFor(t, again.MessageId, heraldv1.Status_STATUS_ACCEPTED, "")
	rc := g.receive(phone)
	if d := rc.next(); d.ClientMessageId != "warm" {
		t.Fatalf("first delivery %q, want warm", d.ClientMessageId)
	}
	if d := rc.next(); d.MessageId != again.MessageId {
		t.Fatalf("second delivery %s, want the stalled message %s", d.MessageId, again.MessageId)
	}
	rc.none(300 * time.Millisecond) // delivered once
}

// reasonOf is the ErrorInfo reason of a status error, or "".
func reasonOf(err error) string {
	for _, d := range grpcstatus.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

// TestRedisRefusingWritesAnswersOutcomeUnknown: a Redis that refuses writes for want of
// replicas (min-replicas-to-write) refuses the admission script once it writes, so a
// Send is answered UNAVAILABLE with OUTCOME_UNKNOWN, which tells the business a retry
// is safe, and never INTERNAL; once Redis writes again, the retry goes through.
func TestRedisRefusingWritesAnswersOutcomeUnknown(t *testing.T) {
	t.Parallel()
	if redistest.Memory() {
		t.Skip("the in-process store has no replicas to wait for")
	}
	rs := redistest.Start(t)
	g := startGatewayOn(t, rs, withClock(newClock()))
	_, key := g.newBusiness("Acme")
	phone := g.register(alice)
	g.send(key, msg(alice, tx, rcpt, "warm", "hi", phone))
	ctx := context.Background()
	if err := rs.Client.ConfigSet(ctx, "min-replicas-to-write", "1").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := g.messaging.Send(as(key), &heraldv1.SendRequest{Message: msg(alice, tx, rcpt, "refused", "hi", phone)})
	requireReason(t, err, codes.Unavailable, "OUTCOME_UNKNOWN")
	if err := rs.Client.ConfigSet(ctx, "min-replicas-to-write", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if r := g.send(key, msg(alice, tx, rcpt, "refused", "hi", phone)); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("retry: %v", r)
	}
}
