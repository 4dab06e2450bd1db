package push

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// jwtParts splits and decodes a compact JWS's header and claims.
func jwtParts(t *testing.T, tok string) (map[string]any, map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("JWT of %d parts", len(parts))
	}
	var h, c map[string]any
	for i, dst := range []*map[string]any{&h, &c} {
		b, err := b64.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	return h, c
}

// recorder keeps what a local push service was sent, to check that nothing in it
// names a sender or content.
type recorder struct {
	mu       sync.Mutex
	requests []string // method, path, headers and body of each
}

func (r *recorder) add(req *http.Request, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	b.WriteString(req.Method + " " + req.URL.String() + "\n")
	req.Header.Write(&b)
	b.Write(body)
	r.requests = append(r.requests, b.String())
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

// TestWebPush: a local push service (HTTP/2 over TLS) checks each request as RFC 8030
// and RFC 8292 say: an empty POST with a TTL, a VAPID JWT signed with ES256 by the key
// in k, for the service's origin, expiring within 24 hours, with a contact subject. A
// 410 is ErrGone.
func TestWebPush(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rec := &recorder{}
	var srvURL string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.add(r, body)
		fail := func(why string) {
			t.Errorf("web push request refused: %s", why)
			http.Error(w, why, http.StatusUnauthorized)
		}
		if r.ProtoMajor != 2 || r.Method != http.MethodPost || len(body) != 0 || r.Header.Get("TTL") == "" {
			fail("want an empty HTTP/2 POST with a TTL")
			return
		}
		auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "vapid t=")
		if !ok {
			fail("no vapid authorization")
			return
		}
		tok, k, ok := strings.Cut(auth, ", k=")
		raw, err := b64.DecodeString(k)
		if !ok || err != nil {
			fail("no k")
			return
		}
		pub, err := ecdh.P256().NewPublicKey(raw)
		if err != nil {
			fail("k is not a P-256 point")
			return
		}
		epub, _ := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub.Bytes())
		if !verifyES256(tok, epub) {
			fail("bad ES256 signature")
			return
		}
		h, c := jwtParts(t, tok)
		exp, _ := c["exp"].(float64)
		if h["alg"] != "ES256" || c["aud"] != srvURL || !strings.HasPrefix(c["sub"].(string), "mailto:") ||
			time.Until(time.Unix(int64(exp), 0)) > 24*time.Hour || time.Until(time.Unix(int64(exp), 0)) <= 0 {
			fail("bad claims")
			return
		}
		if strings.HasSuffix(r.URL.Path, "/gone") {
			w.WriteHeader(http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	srvURL = srv.URL

	wp, err := NewWebPush(key, "mailto:ops@example.com", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		if err := wp.Wake(ctx, srv.URL+"/push/abc123"); err != nil {
			t.Fatal(err)
		}
	}
	if err := wp.Wake(ctx, srv.URL+"/push/gone"); !errors.Is(err, ErrGone) {
		t.Fatalf("a 410 endpoint: %v, want ErrGone", err)
	}
	if n := rec.count(); n != 4 {
		t.Fatalf("the service got %d requests, want 4", n)
	}
	// The key browsers subscribe with is the one that signs.
	raw, _ := b64.DecodeString(wp.PublicKey())
	if pub, err := key.PublicKey.ECDH(); err != nil || string(pub.Bytes()) != string(raw) {
		t.Fatal("PublicKey is not the VAPID key's")
	}
	if _, err := NewWebPush(key, "ops@example.com", nil); err == nil {
		t.Fatal("a subject that is no URL was taken")
	}
}

// TestFCM: a local token endpoint checks the service account's RS256 assertion (issuer,
// scope, audience, lifetime) and hands out an access token, reused across wake-ups; a
// local FCM checks the bearer token and that the message names the device and carries
// no notification and no data. UNREGISTERED is ErrGone.
func TestFCM(t *testing.T) {
	t.Parallel()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	rec := &recorder{}
	var tokens int
	mux := http.NewServeMux()
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		a := r.PostForm.Get("assertion")
		h, c := jwtParts(t, a)
		parts := strings.Split(a, ".")
		sig, _ := b64.DecodeString(parts[2])
		digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || h["alg"] != "RS256" ||
			rsa.VerifyPKCS1v15(&rsaKey.PublicKey, crypto.SHA256, digest[:], sig) != nil ||
			c["iss"] != "herald@example.iam.gserviceaccount.com" || c["scope"] != fcmScope || c["aud"] != srv.URL+"/token" {
			t.Errorf("bad assertion: %v %v", h, c)
			http.Error(w, "bad assertion", http.StatusBadRequest)
			return
		}
		tokens++
		json.NewEncoder(w).Encode(map[string]any{"access_token": "ya29.test", "expires_in": 3600})
	})
	mux.HandleFunc("POST /v1/projects/herald-test/messages:send", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.add(r, body)
		var m struct {
			Message map[string]json.RawMessage `json:"message"`
		}
		if r.Header.Get("Authorization") != "Bearer ya29.test" || json.Unmarshal(body, &m) != nil {
			t.Errorf("bad request: %s", body)
			http.Error(w, "bad", http.StatusUnauthorized)
			return
		}
		for _, f := range []string{"notification", "data"} {
			if _, ok := m.Message[f]; ok {
				t.Errorf("the message carries %s: %s", f, body)
			}
		}
		var to string
		json.Unmarshal(m.Message["token"], &to)
		if to == "gone-token" {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"code":404,"status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`))
			return
		}
		w.Write([]byte(`{"name":"projects/herald-test/messages/1"}`))
	})
	sa, _ := json.Marshal(ServiceAccount{ProjectID: "herald-test", ClientEmail: "herald@example.iam.gserviceaccount.com",
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), TokenURI: srv.URL + "/token"})
	f, err := NewFCM(sa, srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		if err := f.Wake(ctx, "device-token-1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Wake(ctx, "gone-token"); !errors.Is(err, ErrGone) {
		t.Fatalf("an unregistered token: %v, want ErrGone", err)
	}
	if tokens != 1 || rec.count() != 4 {
		t.Fatalf("%d access tokens for %d messages; want 1 for 4", tokens, rec.count())
	}
}

// TestAPNs: a local APNs (HTTP/2 over TLS) checks the background push: the path names
// the device, the topic and push type are set, the provider token is an ES256 JWT with
// the key id and team id, and the body is the content-available flag and nothing else.
// Unregistered is ErrGone; BadDeviceToken (also a token of the other environment) is not.
func TestAPNs(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rec := &recorder{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.add(r, body)
		tok, _ := strings.CutPrefix(r.Header.Get("authorization"), "bearer ")
		h, c := jwtParts(t, tok)
		iat, _ := c["iat"].(float64)
		if r.ProtoMajor != 2 || !strings.HasPrefix(r.URL.Path, "/3/device/") || r.Header.Get("apns-topic") != "dev.herald.app" ||
			r.Header.Get("apns-push-type") != "background" || r.Header.Get("apns-priority") != "5" ||
			string(body) != `{"aps":{"content-available":1}}` || !verifyES256(tok, &key.PublicKey) ||
			h["kid"] != "KEY123" || c["iss"] != "TEAM456" || time.Since(time.Unix(int64(iat), 0)) > time.Hour {
			t.Errorf("bad APNs request: %s %v %v %s", r.URL.Path, h, c, body)
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/gone") {
			w.WriteHeader(http.StatusGone)
			w.Write([]byte(`{"reason":"Unregistered"}`))
			return
		}
		if strings.HasSuffix(r.URL.Path, "/otherenv") {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"reason":"BadDeviceToken"}`))
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	a, err := NewAPNs(key, "KEY123", "TEAM456", "dev.herald.app", srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Wake(ctx, "abcdef0123"); err != nil {
		t.Fatal(err)
	}
	if err := a.Wake(ctx, "gone"); !errors.Is(err, ErrGone) {
		t.Fatalf("an unregistered device: %v, want ErrGone", err)
	}
	// A token of the other environment is refused, not gone: a gateway pointed at the
	// wrong service must not forget the endpoints.
	if err := a.Wake(ctx, "otherenv"); err == nil || errors.Is(err, ErrGone) {
		t.Fatalf("a BadDeviceToken answer: %v, want an error that is not ErrGone", err)
	}
	if rec.count() != 3 {
		t.Fatalf("%d requests, want 3", rec.count())
	}
}
