package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/business"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

func withCaps(c blocklist.Caps) func(*Config) { return func(cfg *Config) { cfg.Caps = c } }

func offerTo(to, id string, d device) *heraldv1.Message { return msg(to, mk, offr, id, "offer", d) }

func optIn(t *testing.T, g *gateway, d device, biz string) {
	t.Helper()
	if _, err := g.recipient.SetConsent(as(d.token), &heraldv1.SetConsentRequest{BusinessId: biz, Category: mk,
		Consent: heraldv1.Consent_CONSENT_OPTED_IN}); err != nil {
		t.Fatal(err)
	}
}

// TestRecipientMarketingCapAcrossBusinesses: a person gets at most N marketing
// messages per window from all businesses together; transactional doesn't count; the
// retry_after is honest.
func TestRecipientMarketingCapAcrossBusinesses(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := startGateway(t, withClock(c), withCaps(blocklist.Caps{MarketingPerWindow: 2, MarketingWindow: time.Hour}))
	a, keyA := g.newBusiness("A")
	b, keyB := g.newBusiness("B")
	phone := g.register(alice)
	optIn(t, g, phone, a)
	optIn(t, g, phone, b)

	if r := g.send(keyA, offerTo(alice, "a1", phone)); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatal(r)
	}
	c.Add(10 * time.Minute)
	if r := g.send(keyB, offerTo(alice, "b1", phone)); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatal(r)
	}
	if r := g.send(keyB, msg(alice, tx, rcpt, "b-receipt", "r", phone)); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("transactional must not count against the marketing cap: %v", r)
	}
	r := g.send(keyA, offerTo(alice, "a2", phone))
	if r.Outcome != heraldv1.Outcome_OUTCOME_RECIPIENT_CAPPED || r.MessageId != "" {
		t.Fatalf("third offer in the window = %v, want RECIPIENT_CAPPED", r)
	}
	if got, want := r.RetryAfter.AsDuration(), 50*time.Minute; got != want {
		t.Fatalf("retry_after = %v, want %v (when the first offer leaves the window)", got, want)
	}
	c.Add(r.RetryAfter.AsDuration() - time.Second)
	if r := g.send(keyA, offerTo(alice, "a2", phone)); r.Outcome != heraldv1.Outcome_OUTCOME_RECIPIENT_CAPPED {
		t.Fatalf("before retry_after: %v", r)
	}
	c.Add(time.Second)
	if r := g.send(keyA, offerTo(alice, "a2", phone)); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("at retry_after: %v", r)
	}
}

// TestPairRate: one business to one person, any category, at most one per interval
// with a small burst.
func TestPairRate(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := startGateway(t, withClock(c), withCaps(blocklist.Caps{PairInterval: 6 * time.Second, PairBurst: 2}))
	_, key := g.newBusiness("A")
	_, other := g.newBusiness("B")
	phone := g.register(alice)
	for i := range 2 {
		if r := g.send(key, msg(alice, tx, rcpt, fmt.Sprint("r", i), "x", phone)); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
			t.Fatalf("burst message %d: %v", i, r)
		}
	}
	r := g.send(key, msg(alice, tx, rcpt, "r2", "x", phone))
	if r.Outcome != heraldv1.Outcome_OUTCOME_RECIPIENT_CAPPED || r.RetryAfter.AsDuration() != 6*time.Second {
		t.Fatalf("over the pair rate: %v, want RECIPIENT_CAPPED after 6s", r)
	}
	if r := g.send(other, msg(alice, tx, rcpt, "o1", "x", phone)); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("another business to the same person: %v", r)
	}
	c.Add(6*time.Second - time.Millisecond)
	if r := g.send(key, msg(alice, tx, rcpt, "r2", "x", phone)); r.Outcome != heraldv1.Outcome_OUTCOME_RECIPIENT_CAPPED {
		t.Fatalf("just before retry_after: %v", r)
	}
	c.Add(time.Millisecond)
	if r := g.send(key, msg(alice, tx, rcpt, "r2", "x", phone)); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("at retry_after: %v", r)
	}
}

// TestDailyUniqueRecipients: the N+1th new person is refused, people already
// messaged still get through, and the window rolls.
func TestDailyUniqueRecipients(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := startGateway(t, withClock(c), withCaps(blocklist.Caps{NewWindow: time.Hour}))
	biz, key := g.newBusiness("A")
	g.setLimits(biz, 1e6, 1e6, 3)
	people := make([]string, 5)
	devs := make([]device, 5)
	for i := range people {
		people[i] = fmt.Sprintf("+1415555%04d", 100+i)
		devs[i] = g.register(people[i])
	}
	send := func(i int, id string) *heraldv1.Result {
		return g.send(key, msg(people[i], tx, rcpt, id, "x", devs[i]))
	}
	for i := range 3 {
		if r := send(i, "first"); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
			t.Fatalf("new person %d: %v", i, r)
		}
	}
	r := send(3, "first")
	if r.Outcome != heraldv1.Outcome_OUTCOME_NEW_RECIPIENT_LIMITED || r.RetryAfter.AsDuration() <= 0 || r.RetryAfter.AsDuration() > time.Hour {
		t.Fatalf("4th new person = %v, want NEW_RECIPIENT_LIMITED with a retry within the window", r)
	}
	if r := send(0, "second"); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("a person already messaged: %v", r)
	}
	c.Add(time.Hour + time.Second)
	if r := send(3, "first"); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("after the window rolled: %v", r)
	}
}

// TestLookupsCountAsNewRecipients: looking up a person counts like messaging them.
func TestLookupsCountAsNewRecipients(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	biz, key := g.newBusiness("A")
	g.setLimits(biz, 1e6, 1e6, 2)
	p1, p2 := g.register(alice), g.register(bob)
	lookup := func(to string) heraldv1.Outcome {
		t.Helper()
		r, err := g.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: to, Category: tx})
		if err != nil {
			t.Fatal(err)
		}
		return r.Outcome
	}
	if o := lookup(alice); o != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatal(o)
	}
	if o := lookup("+14155550999"); o != heraldv1.Outcome_OUTCOME_UNKNOWN_RECIPIENT {
		t.Fatalf("unregistered number: %v", o)
	}
	if o := lookup(bob); o != heraldv1.Outcome_OUTCOME_NEW_RECIPIENT_LIMITED {
		t.Fatalf("third distinct lookup = %v, want NEW_RECIPIENT_LIMITED (no keys, nothing revealed)", o)
	}
	if o := lookup(alice); o != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("repeat lookup: %v", o)
	}
	if r := g.send(key, msg(alice, tx, rcpt, "m1", "x", p1)); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("send to a looked-up person: %v", r)
	}
	if r := g.send(key, msg(bob, tx, rcpt, "m2", "x", p2)); r.Outcome != heraldv1.Outcome_OUTCOME_NEW_RECIPIENT_LIMITED {
		t.Fatalf("send to a new person over the allowance: %v", r)
	}
}

// TestRetryInfoIsHonest: over the business's rate, Send fails RESOURCE_EXHAUSTED
// with a RetryInfo; a retry just before it fails, a retry after it succeeds.
func TestRetryInfoIsHonest(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := startGateway(t, withClock(c))
	biz, key := g.newBusiness("A")
	g.setLimits(biz, 1, 1, 0)
	phone := g.register(alice)
	send := func(id string) error {
		_, err := g.messaging.Send(as(key), &heraldv1.SendRequest{Message: msg(alice, tx, rcpt, id, "x", phone)})
		return err
	}
	if err := send("a"); err != nil {
		t.Fatal(err)
	}
	err := send("b")
	requireCode(t, err, codes.ResourceExhausted, "")
	var delay time.Duration
	for _, d := range grpcstatus.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri.RetryDelay.AsDuration()
		}
	}
	if delay != time.Second {
		t.Fatalf("RetryInfo delay = %v, want 1s at 1 message/s", delay)
	}
	c.Add(delay - time.Millisecond)
	requireCode(t, send("b"), codes.ResourceExhausted, "")
	c.Add(time.Millisecond)
	if err := send("b"); err != nil {
		t.Fatalf("retry after the RetryInfo delay: %v", err)
	}
}

// TestBatchPartialAdmission: a batch over the rate admits what the limit allows, in
// order, and the rest are RATE_LIMITED with retry_after.
func TestBatchPartialAdmission(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := startGateway(t, withClock(c))
	biz, key := g.newBusiness("A")
	g.setLimits(biz, 1, 5, 0)
	phone := g.register(alice)
	req := &heraldv1.SendBatchRequest{}
	for i := range 8 {
		req.Messages = append(req.Messages, msg(alice, tx, rcpt, fmt.Sprint("m", i), "x", phone))
	}
	resp, err := g.messaging.SendBatch(as(key), req)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.Results {
		want := heraldv1.Outcome_OUTCOME_ACCEPTED
		if i >= 5 {
			want = heraldv1.Outcome_OUTCOME_RATE_LIMITED
		}
		if r.Outcome != want || (i >= 5 && r.RetryAfter.AsDuration() != time.Second) {
			t.Fatalf("result %d = %v, want %v (retry after 1s for the limited)", i, r, want)
		}
	}
}

// TestLimitChangesReachEveryReplica: a limit the operator raises through one gateway
// applies on another within the 4 s the API promises (the limits cache serves an entry
// for at most 2×LimitsCacheTTL).
func TestLimitChangesReachEveryReplica(t *testing.T) {
	t.Parallel()
	c := newClock()
	a := startGateway(t, withClock(c))
	b := startGatewayOn(t, a.redis, withClock(c))
	biz, key := a.newBusiness("A")
	a.setLimits(biz, 1, 1, 0)
	phone := a.register(alice)
	batch := func(g *gateway, prefix string, n int) int {
		req := &heraldv1.SendBatchRequest{}
		for i := range n {
			req.Messages = append(req.Messages, msg(alice, tx, rcpt, fmt.Sprint(prefix, i), "x", phone))
		}
		resp, err := g.messaging.SendBatch(as(key), req)
		if err != nil {
			t.Fatal(err)
		}
		ok := 0
		for _, r := range resp.Results {
			if r.Outcome == heraldv1.Outcome_OUTCOME_ACCEPTED {
				ok++
			}
		}
		return ok
	}
	if got := batch(b, "x", 10); got != 1 {
		t.Fatalf("at 1/s burst 1, %d of 10 admitted", got)
	}
	a.setLimits(biz, 1000, 100, 0)
	if 2*business.LimitsCacheTTL > 4*time.Second {
		t.Fatalf("LimitsCacheTTL %v: changes must apply within 4 s", business.LimitsCacheTTL)
	}
	c.Add(business.LimitsCacheTTL)
	if got := batch(b, "y", 50); got != 50 {
		t.Fatalf("after the operator raised the limit, the other replica admitted %d of 50", got)
	}
}
