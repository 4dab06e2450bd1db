package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/webhook"
	"google.golang.org/grpc/codes"
)

// TestWebhookGetsStatusEvents: a business that sets a webhook gets its status events
// POSTed there, signed with the secret SetWebhook returned, in order; GetWebhook and
// the operator's GetBusiness show the deliveries. A URL that is not https is refused.
func TestWebhookGetsStatusEvents(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var events []webhook.Event
	var secret string
	recv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := webhook.Verify(r.Header.Get(webhook.SignatureHeader), body, secret, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("signature: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var e webhook.Event
		json.Unmarshal(body, &e)
		events = append(events, e)
	}))
	defer recv.Close()
	g := startGateway(t, func(c *Config) {
		c.WebhookOptions = []webhook.Option{webhook.WithPrivateAddresses(), webhook.WithPollInterval(20 * time.Millisecond),
			webhook.WithTLSConfig(func(tr *http.Transport) {
				tr.TLSClientConfig = recv.Client().Transport.(*http.Transport).TLSClientConfig
			})}
	})
	biz, key := g.newBusiness("Acme")
	_, err := g.messaging.SetWebhook(as(key), &heraldv1.SetWebhookRequest{Url: "http://example.com/hook"})
	requireCode(t, err, codes.InvalidArgument, "url")
	set, err := g.messaging.SetWebhook(as(key), &heraldv1.SetWebhookRequest{Url: recv.URL + "/herald"})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	secret = set.Secret
	mu.Unlock()

	phone := g.register(alice)
	r := g.send(key, msg(alice, tx, rcpt, "order-1", "hello", phone))
	rc := g.receive(phone)
	rc.next()
	if _, err := g.recipient.Ack(as(phone.token), &heraldv1.AckRequest{MessageIds: []string{r.MessageId}}); err != nil {
		t.Fatal(err)
	}
	// Waited for on what the gateway records, not on what the receiver saw: the
	// receiver has an event before its answer reaches the gateway, which counts the
	// delivery only then.
	deadline := time.Now().Add(10 * time.Second)
	var wh *heraldv1.GetWebhookResponse
	for {
		wh, err = g.messaging.GetWebhook(as(key), &heraldv1.GetWebhookRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if wh.Webhook.Delivered >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d webhook events delivered within 10 s, want 2", wh.Webhook.Delivered)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if wh.Webhook.Delivered != 2 || wh.Webhook.FailingSince != nil {
		t.Fatalf("GetWebhook = %v", wh)
	}
	mu.Lock()
	if len(events) != 2 {
		mu.Unlock()
		t.Fatalf("the receiver got %d events, want 2", len(events))
	}
	got := []string{events[0].Status, events[1].Status}
	e := events[1]
	mu.Unlock()
	if got[0] != "ACCEPTED" || got[1] != "DELIVERED" || e.MessageID != r.MessageId || e.ClientMessageID != "order-1" ||
		e.DeviceID != phone.id || e.BusinessID != biz {
		t.Fatalf("events %v, last %+v", got, e)
	}
	if m := serveMetrics(t, g).scrape(); m[series("herald_webhook_deliveries_total", "result=delivered")] != 2 {
		t.Errorf("webhook metrics: delivered %v, want 2", m[series("herald_webhook_deliveries_total", "result=delivered")])
	}
	gb, err := g.admin.GetBusiness(g.adminCtx(), &heraldv1.GetBusinessRequest{BusinessId: biz})
	if err != nil || gb.Webhook.GetUrl() != recv.URL+"/herald" {
		t.Fatalf("GetBusiness = %v, %v", gb, err)
	}
}
