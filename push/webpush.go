package push

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/egress"
)

// WebPush sends wake-ups to Web Push endpoints (RFC 8030), identifying the
// application server with VAPID (RFC 8292).
type WebPush struct {
	key     *ecdsa.PrivateKey
	subject string
	client  *http.Client
	now     func() time.Time
	ttl     time.Duration

	mu   sync.Mutex
	jwts map[string]cachedJWT // by audience
}

type cachedJWT struct {
	token   string
	expires time.Time
}

// vapidLifetime is how long a VAPID JWT is valid: RFC 8292 allows at most 24 hours.
const vapidLifetime = 12 * time.Hour

// NewWebPush returns a WebPush sender with the VAPID key pair key (a P-256 key; its
// public half is what a browser subscribes with, as applicationServerKey) and
// subject, a mailto: or https: contact the push service can reach the operator at.
// client makes the requests (nil: one that reaches only public addresses and follows
// no redirect, since endpoints are URLs devices chose: internal/egress).
func NewWebPush(key *ecdsa.PrivateKey, subject string, client *http.Client) (*WebPush, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return nil, errors.New("push: the VAPID key must be a P-256 key")
	}
	if u, err := url.Parse(subject); err != nil || (u.Scheme != "mailto" && u.Scheme != "https") {
		return nil, fmt.Errorf("push: VAPID subject %q: want a mailto: or https: URL", subject)
	}
	if client == nil {
		// Endpoints are URLs devices chose: only public addresses, no redirects.
		client = egress.Client(false, 15*time.Second)
	}
	return &WebPush{key: key, subject: subject, client: client, now: time.Now, ttl: 24 * time.Hour,
		jwts: map[string]cachedJWT{}}, nil
}

// ParseVAPIDKey reads a VAPID private key from PEM (an "EC PRIVATE KEY" or a PKCS #8
// "PRIVATE KEY" block), as an operator keeps it in a file.
func ParseVAPIDKey(pemBytes []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("push: VAPID key: no PEM block")
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("push: VAPID key: %w", err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("push: VAPID key: a %T, want an ECDSA key", k)
	}
	return ec, nil
}

// PublicKey is the VAPID public key as browsers take it (applicationServerKey): the
// uncompressed point, base64url without padding.
func (w *WebPush) PublicKey() string {
	pub, err := w.key.PublicKey.ECDH()
	if err != nil {
		return ""
	}
	return b64.EncodeToString(pub.Bytes())
}

// Wake sends an empty push message to endpoint: the service wakes the app, which
// fetches what waits. The message may wait at the service for up to a day (TTL).
func (w *WebPush) Wake(ctx context.Context, endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%w: not an https endpoint", ErrGone)
	}
	auth, err := w.authorization(u.Scheme + "://" + u.Host)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return err
	}
	req.Header.Set("TTL", strconv.Itoa(int(w.ttl.Seconds())))
	req.Header.Set("Urgency", "normal")
	req.Header.Set("Authorization", auth)
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("push: web push: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusAccepted:
		return nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return fmt.Errorf("%w: web push answered %d", ErrGone, resp.StatusCode)
	}
	return &StatusError{Service: "web push", StatusCode: resp.StatusCode, RetryAfter: retryAfter(resp.Header)}
}

// authorization is the VAPID Authorization header for the push service at audience
// (its origin), from a cache until an hour before the JWT expires.
func (w *WebPush) authorization(audience string) (string, error) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.jwts[audience]
	if !ok || now.Add(time.Hour).After(c.expires) {
		exp := now.Add(vapidLifetime)
		tok, err := signJWT(map[string]any{"typ": "JWT", "alg": "ES256"},
			map[string]any{"aud": audience, "exp": exp.Unix(), "sub": w.subject}, w.key)
		if err != nil {
			return "", err
		}
		c = cachedJWT{token: tok, expires: exp}
		if len(w.jwts) > 1024 {
			clear(w.jwts)
		}
		w.jwts[audience] = c
	}
	return "vapid t=" + c.token + ", k=" + w.PublicKey(), nil
}
