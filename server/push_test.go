package server

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/push"
)

// pushService is a local Web Push service (RFC 8030) over HTTP/2 and TLS. It checks
// each request's VAPID JWT as RFC 8292 says (an ES256 signature by the key in k, the
// service's origin as aud, exp within 24 hours, a contact subject), answers 410 for
// endpoints under /gone/, and records every request to check that nothing in it names
// a sender or content.
type pushService struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	wakes    map[string]int // by endpoint path
	requests []string       // headers and body of each
}

func newPushService(t *testing.T) *pushService {
	p := &pushService{t: t, wakes: map[string]int{}}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var dump strings.Builder
		r.Header.Write(&dump)
		dump.Write(body)
		p.mu.Lock()
		p.requests = append(p.requests, dump.String())
		p.wakes[r.URL.Path]++
		p.mu.Unlock()
		if err := p.checkVAPID(r, body); err != "" {
			t.Errorf("web push request refused: %s", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/gone/") {
			w.WriteHeader(http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	p.srv.EnableHTTP2 = true
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	return p
}

func (p *pushService) checkVAPID(r *http.Request, body []byte) string {
	if r.ProtoMajor != 2 || r.Method != http.MethodPost || len(body) != 0 || r.Header.Get("TTL") == "" {
		return "want an empty HTTP/2 POST with a TTL"
	}
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "vapid t=")
	tok, k, ok2 := strings.Cut(auth, ", k=")
	if !ok || !ok2 {
		return "no vapid t= and k="
	}
	raw, err := base64.RawURLEncoding.DecodeString(k)
	if err != nil {
		return "k is not base64url"
	}
	pub, err := ecdh.P256().NewPublicKey(raw)
	if err != nil {
		return "k is not a P-256 point"
	}
	key, _ := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub.Bytes())
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "the JWT is not three parts"
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if len(sig) != 64 || !ecdsa.Verify(key, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return "bad ES256 signature"
	}
	var header, claims map[string]any
	h, _ := base64.RawURLEncoding.DecodeString(parts[0])
	c, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(h, &header)
	json.Unmarshal(c, &claims)
	exp, _ := claims["exp"].(float64)
	left := time.Until(time.Unix(int64(exp), 0))
	sub, _ := claims["sub"].(string)
	if header["alg"] != "ES256" || claims["aud"] != p.srv.URL || left <= 0 || left > 24*time.Hour || !strings.HasPrefix(sub, "mailto:") {
		return "bad JWT claims"
	}
	return ""
}

func (p *pushService) count(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.wakes[path]
}

// TestWakeUps: a device with a Web Push endpoint and no open stream gets one wake-up
// for ten messages admitted within the wake interval; a device with an open stream
// gets none; an endpoint the service says is gone (410) is forgotten and never called
// again; and nothing the service receives names the business or the content.
func TestWakeUps(t *testing.T) {
	t.Parallel()
	svc := newPushService(t)
	vapid, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wp, err := push.NewWebPush(vapid, "mailto:ops@example.com", svc.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, func(c *Config) { c.WebPush, c.WakeInterval = wp, time.Hour })
	biz, key := g.newBusiness("Acme Secret Clinic")
	waitWake := func(path string, n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for svc.count(path) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s got %d wake-ups within 10 s, want %d", path, svc.count(path), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	endpoint := func(d device, path string) {
		t.Helper()
		if _, err := g.recipient.SetPushEndpoint(as(d.token), &heraldv1.SetPushEndpointRequest{
			Endpoint: &heraldv1.SetPushEndpointRequest_WebPushEndpoint{WebPushEndpoint: svc.srv.URL + path}}); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := g.recipient.GetPushConfig(as(g.register("+14155550150").token), &heraldv1.GetPushConfigRequest{})
	if err != nil || !cfg.WebPush || cfg.Fcm || cfg.VapidPublicKey != wp.PublicKey() {
		t.Fatalf("push config = %v, %v", cfg, err)
	}

	// Offline, ten messages: one wake-up. The sentinel's wake-up, queued after them,
	// shows that no second one for alice was on its way.
	phone := g.register(alice)
	endpoint(phone, "/push/alice")
	for i := range 10 {
		g.send(key, msg(alice, tx, rcpt, "order-"+string(rune('a'+i)), "your test results are ready", phone))
	}
	waitWake("/push/alice", 1)
	sentinel := func(n int) {
		t.Helper()
		d := g.register("+1415555" + string(rune('0'+n)) + "999")
		endpoint(d, "/push/sentinel")
		g.send(key, msg("+1415555"+string(rune('0'+n))+"999", tx, rcpt, "s", "x", d))
		waitWake("/push/sentinel", n)
	}
	sentinel(1)
	if n := svc.count("/push/alice"); n != 1 {
		t.Fatalf("alice got %d wake-ups for ten messages within the interval, want 1", n)
	}

	// With its stream open, bob's device needs no wake-up.
	laptop := g.register(bob)
	endpoint(laptop, "/push/bob")
	rc := g.receive(laptop)
	// The stream is live once its first fetch marked it so; a message admitted
	// before that may wake the device (harmless: its app is opening anyway).
	live := keys.Recipient(g.srv.uid(bob)).Live(laptop.id)
	for deadline := time.Now().Add(10 * time.Second); g.rdb.Exists(context.Background(), live).Val() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("bob's stream never marked itself live")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := g.send(key, msg(bob, tx, rcpt, "b1", "hello", laptop))
	if d := rc.next(); d.MessageId != r.MessageId {
		t.Fatalf("bob got %s", d.MessageId)
	}
	g.send(key, msg(bob, tx, rcpt, "b2", "again", laptop))
	rc.next()
	sentinel(2)
	if n := svc.count("/push/bob"); n != 0 {
		t.Fatalf("bob's open stream got %d wake-ups", n)
	}

	// A gone endpoint is called once and forgotten.
	tablet := g.register("+14155550177")
	endpoint(tablet, "/gone/tablet")
	g.send(key, msg("+14155550177", tx, rcpt, "g1", "x", tablet))
	waitWake("/gone/tablet", 1)
	uid := g.srv.uid("+14155550177")
	deadline := time.Now().Add(10 * time.Second)
	for g.rdb.HExists(context.Background(), keys.Recipient(uid).PushEndpoints(), tablet.id).Val() {
		if time.Now().After(deadline) {
			t.Fatal("the gone endpoint was not forgotten")
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.rdb.Del(context.Background(), keys.Recipient(uid).Woken(tablet.id)) // as after the interval
	g.send(key, msg("+14155550177", tx, rcpt, "g2", "x", tablet))
	sentinel(3)
	if n := svc.count("/gone/tablet"); n != 1 {
		t.Fatalf("the gone endpoint was called %d times", n)
	}

	// The operator sees the wake-ups in the metrics.
	m := serveMetrics(t, g).scrape()
	if m[series("herald_push_wakeups_total", "result=sent")] < 3 || m[series("herald_push_wakeups_total", "result=gone")] != 1 {
		t.Errorf("wake-up metrics: sent %v, gone %v; want at least 3 and 1", m[series("herald_push_wakeups_total", "result=sent")],
			m[series("herald_push_wakeups_total", "result=gone")])
	}

	// Nothing the push service saw names the business, the content or the number.
	svc.mu.Lock()
	defer svc.mu.Unlock()
	for _, req := range svc.requests {
		for _, secret := range []string{biz, "Acme", "Clinic", "test results", alice, "order-"} {
			if strings.Contains(req, secret) {
				t.Fatalf("a wake-up carries %q:\n%s", secret, req)
			}
		}
	}
}
