package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
)

const biz = "biz_acme"

// receiver is a business's HTTPS endpoint: it refuses the first failures requests
// (503), then takes every event whose signature verifies with its secret.
type receiver struct {
	t        *testing.T
	srv      *httptest.Server
	secret   string
	now      func() time.Time // the receiver's clock
	mu       sync.Mutex
	failures int
	requests int
	events   []Event // in the order taken, repeats included
	headers  []string
}

func newReceiver(t *testing.T, failures int) *receiver {
	r := &receiver{t: t, failures: failures, now: time.Now}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests++
		if r.failures > 0 {
			r.failures--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		h := req.Header.Get(SignatureHeader)
		if err := Verify(h, body, r.secret, r.now(), 5*time.Minute); err != nil {
			t.Errorf("an event whose signature does not verify: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var e Event
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("body %s: %v", body, err)
		}
		r.events = append(r.events, e)
		r.headers = append(r.headers, h)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) taken() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// dispatcher starts a Dispatcher that trusts the receiver's certificate and may call
// loopback, with fast retries.
func dispatcher(t *testing.T, rs *redistest.Server, r *receiver, opts ...Option) {
	ctx, cancel := context.WithCancel(context.Background())
	d := New(rs.Client, append([]Option{WithPrivateAddresses(), WithPollInterval(20 * time.Millisecond),
		WithBackoff(10*time.Millisecond, 40*time.Millisecond), WithTLSConfig(func(tr *http.Transport) {
			tr.TLSClientConfig = r.srv.Client().Transport.(*http.Transport).TLSClientConfig
		})}, opts...)...)
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// addEvents writes n status events into the business's stream, as the forwarder does.
func addEvents(t *testing.T, rs *redistest.Server, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		e := keys.Event{Status: keys.StatusDelivered, Business: biz, MessageID: "m" + string(rune('a'+i%26)),
			ClientMessageID: "order-" + string(rune('a'+i%26)), DeviceID: "d1", Time: time.UnixMilli(int64(1_700_000_000_000 + i))}
		if i%5 == 4 {
			e.Status, e.Reason = keys.StatusFailed, keys.RejectBadSignature
		}
		if err := rs.Client.XAdd(context.Background(), &redis.XAddArgs{Stream: keys.Business(biz).Statuses(), Values: e.StreamValues()}).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20 s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEveryEventOnceAfterDedupeInOrder: a receiver that fails for a while, then
// recovers, gets every event after the webhook was set, in stream order, each with a
// valid signature; after dedupe by id, each exactly once. Events from before the
// webhook are not sent.
func TestEveryEventOnceAfterDedupeInOrder(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	addEvents(t, rs, 0, 3) // before the webhook: not sent
	r := newReceiver(t, 4)
	store := NewStore(rs.Client)
	secret, err := store.Set(ctx, biz, r.srv.URL+"/herald", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r.secret = secret
	dispatcher(t, rs, r)
	dispatcher(t, rs, r) // a second gateway
	addEvents(t, rs, 3, 20)
	waitFor(t, "20 events", func() bool {
		seen := map[string]bool{}
		for _, e := range r.taken() {
			seen[e.ID] = true
		}
		return len(seen) == 20
	})
	var ids []string
	seen := map[string]bool{}
	for _, e := range r.taken() {
		if !seen[e.ID] {
			seen[e.ID] = true
			ids = append(ids, e.ID)
		}
	}
	xs := rs.Client.XRange(ctx, keys.Business(biz).Statuses(), "-", "+").Val()[3:]
	for i, x := range xs {
		if ids[i] != "evt_"+x.ID {
			t.Fatalf("event %d is %s, want %s: out of order", i, ids[i], "evt_"+x.ID)
		}
	}
	failed := 0
	for _, e := range r.taken() {
		if e.BusinessID != biz || e.Type != "message.status" || (e.Status == "FAILED") != (e.FailureReason == "BAD_SIGNATURE") {
			t.Fatalf("event %+v", e)
		}
		if e.Status == "FAILED" && seen[e.ID] {
			failed++
			seen[e.ID] = false
		}
	}
	if failed != 4 {
		t.Fatalf("%d FAILED events, want 4", failed)
	}
	e := r.taken()[0]
	st, err := store.Get(ctx, biz)
	if err != nil || st.Delivered != 20 || !st.FailingSince.IsZero() || st.Attempts != 0 {
		t.Fatalf("state = %+v, %v", st, err)
	}
	// A wrong secret fails verification.
	body, _ := json.Marshal(e)
	if err := Verify(Sign(time.Now(), body, secret), body, "whsec_wrong", time.Now(), time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify with a wrong secret = %v", err)
	}
	if err := Verify(Sign(time.Now().Add(-time.Hour), body, secret), body, secret, time.Now(), time.Minute); !errors.Is(err, ErrStale) {
		t.Fatalf("Verify of an old signature = %v", err)
	}
}

// TestGivenUpAfterTheRetryWindow: a receiver that never recovers is tried with
// backoff until the failures in a row have lasted the retry window; then delivery is
// given up, visibly (State), and nothing more is sent; setting the webhook again
// resumes it.
func TestGivenUpAfterTheRetryWindow(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	r := newReceiver(t, 1_000_000)
	store := NewStore(rs.Client)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	secret, _ := store.Set(ctx, biz, r.srv.URL, now)
	r.secret, r.now = secret, clock
	dispatcher(t, rs, r, WithClock(clock), WithRetryWindow(time.Hour))
	addEvents(t, rs, 0, 2)
	waitFor(t, "a failure", func() bool { st, _ := store.Get(ctx, biz); return st.Attempts >= 1 })
	st, _ := store.Get(ctx, biz)
	if !st.GaveUp.IsZero() || !strings.Contains(st.LastError, "503") || st.FailingSince.IsZero() {
		t.Fatalf("state while failing = %+v", st)
	}
	mu.Lock()
	now = now.Add(61 * time.Minute)
	mu.Unlock()
	waitFor(t, "the give-up", func() bool { st, _ := store.Get(ctx, biz); return !st.GaveUp.IsZero() })
	r.mu.Lock()
	n := r.requests
	r.mu.Unlock()
	time.Sleep(200 * time.Millisecond) // ten polls: none may send
	r.mu.Lock()
	after := r.requests
	r.failures = 0
	r.mu.Unlock()
	if after != n {
		t.Fatalf("%d requests after giving up", after-n)
	}
	// Set again (the same URL): delivery resumes from now on.
	again, err := store.Set(ctx, biz, r.srv.URL, now)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.secret = again
	r.mu.Unlock()
	addEvents(t, rs, 2, 1)
	waitFor(t, "delivery after setting the webhook again", func() bool { return len(r.taken()) == 1 })
}

// TestRotationSignsWithBoth: for a day after a rotation each request carries a
// signature with each secret, so a receiver verifies with either.
func TestRotationSignsWithBoth(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	r := newReceiver(t, 0)
	store := NewStore(rs.Client)
	old, _ := store.Set(ctx, biz, r.srv.URL, time.Now())
	fresh, err := store.Rotate(ctx, biz, time.Now())
	if err != nil || fresh == old {
		t.Fatalf("rotate = %q, %v", fresh, err)
	}
	r.secret = old
	dispatcher(t, rs, r)
	addEvents(t, rs, 0, 1)
	waitFor(t, "the event", func() bool { return len(r.taken()) == 1 })
	r.mu.Lock()
	h := r.headers[0]
	r.mu.Unlock()
	if strings.Count(h, "v1=") != 2 {
		t.Fatalf("header %q, want two signatures", h)
	}
}

// TestPrivateAddressesAreRefused: without WithPrivateAddresses a webhook on a
// loopback address is never called, and the operator sees why.
func TestPrivateAddressesAreRefused(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	r := newReceiver(t, 0)
	store := NewStore(rs.Client)
	r.secret, _ = store.Set(ctx, biz, r.srv.URL, time.Now())
	d := New(rs.Client, WithPollInterval(20*time.Millisecond), WithBackoff(10*time.Millisecond, 20*time.Millisecond))
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(cctx); close(done) }()
	defer func() { cancel(); <-done }()
	addEvents(t, rs, 0, 1)
	waitFor(t, "a refusal", func() bool { st, _ := store.Get(ctx, biz); return st.Attempts > 0 })
	st, _ := store.Get(ctx, biz)
	if !strings.Contains(st.LastError, "not public") {
		t.Fatalf("last error %q", st.LastError)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.requests != 0 {
		t.Fatalf("the loopback receiver got %d requests", r.requests)
	}
	if err := CheckURL("http://example.com/hook"); !errors.Is(err, ErrBadURL) {
		t.Fatalf("an http URL: %v", err)
	}
}

// TestDeliveryRenewsTheLease: each delivered event renews the lease of the gateway
// delivering, so that a batch of slow deliveries does not outlast it and let another
// gateway send the same events at the same time.
func TestDeliveryRenewsTheLease(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	b := keys.Business(biz)
	if err := rs.Client.HSet(ctx, b.Webhook(), "cur", "0-0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rs.Client.Set(ctx, b.WebhookLease(), "gw", time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	moved, err := advanceScript.Run(ctx, rs.Client, []string{b.Webhook(), b.WebhookLease()}, "gw", "1-0",
		leaseTime.Milliseconds()).Int()
	if err != nil || moved != 1 {
		t.Fatalf("advance: %d, %v", moved, err)
	}
	if left := rs.Client.PTTL(ctx, b.WebhookLease()).Val(); left <= time.Second {
		t.Fatalf("the lease has %v left after a delivery, want it renewed to about %v", left, leaseTime)
	}
}
