package push

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// APNs sends wake-ups through the Apple Push Notification service with token-based
// authentication: background pushes, which wake the app without showing anything.
type APNs struct {
	key     *ecdsa.PrivateKey
	keyID   string
	teamID  string
	topic   string
	baseURL string // https://api.push.apple.com, or a test server
	client  *http.Client
	now     func() time.Time

	mu     sync.Mutex
	jwt    string
	issued time.Time
}

// NewAPNs returns an APNs sender with the signing key from Apple (the .p8 file's
// P-256 key, ParseVAPIDKey reads it too), its key id, the team id and the app's bundle
// id (the topic). baseURL is where APNs is ("" for production,
// https://api.push.apple.com; https://api.sandbox.push.apple.com for development);
// client must speak HTTP/2 (nil: one that does).
func NewAPNs(key *ecdsa.PrivateKey, keyID, teamID, topic, baseURL string, client *http.Client) (*APNs, error) {
	if key == nil || keyID == "" || teamID == "" || topic == "" {
		return nil, errors.New("push: APNs needs a key, its key id, the team id and the topic")
	}
	if baseURL == "" {
		baseURL = "https://api.push.apple.com"
	}
	if client == nil {
		client = &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true}}
	}
	return &APNs{key: key, keyID: keyID, teamID: teamID, topic: topic, baseURL: strings.TrimRight(baseURL, "/"),
		client: client, now: time.Now}, nil
}

// providerTokenLifetime is how long a provider token is reused: APNs refuses one
// older than an hour and one refreshed more often than every 20 minutes.
const providerTokenLifetime = 40 * time.Minute

// Wake sends a background push to the device token: the app wakes and fetches what
// waits.
func (a *APNs) Wake(ctx context.Context, token string) error {
	auth, err := a.providerToken()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.baseURL+"/3/device/"+token,
		strings.NewReader(`{"aps":{"content-available":1}}`))
	if err != nil {
		return err
	}
	req.Header.Set("authorization", "bearer "+auth)
	req.Header.Set("apns-topic", a.topic)
	req.Header.Set("apns-push-type", "background")
	req.Header.Set("apns-priority", "5")
	req.Header.Set("content-type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("push: apns: %w", err)
	}
	defer resp.Body.Close()
	var e struct {
		Reason string `json:"reason"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e)
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	// Only these say the token is gone. BadDeviceToken is also what a token of the
	// other environment (sandbox, production) gets: a gateway pointed at the wrong
	// one must not forget every iOS endpoint at its first wake-up.
	case resp.StatusCode == http.StatusGone || e.Reason == "Unregistered":
		return fmt.Errorf("%w: apns answered %d %s", ErrGone, resp.StatusCode, e.Reason)
	case e.Reason == "ExpiredProviderToken" || e.Reason == "InvalidProviderToken":
		a.mu.Lock()
		a.jwt = ""
		a.mu.Unlock()
	}
	return &StatusError{Service: "apns", StatusCode: resp.StatusCode, Reason: e.Reason, RetryAfter: retryAfter(resp.Header)}
}

// providerToken is the ES256 provider token, reused for providerTokenLifetime.
func (a *APNs) providerToken() (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if a.jwt != "" && now.Sub(a.issued) < providerTokenLifetime {
		return a.jwt, nil
	}
	tok, err := signJWT(map[string]any{"alg": "ES256", "kid": a.keyID}, map[string]any{"iss": a.teamID, "iat": now.Unix()}, a.key)
	if err != nil {
		return "", err
	}
	a.jwt, a.issued = tok, now
	return tok, nil
}
