package push

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// FCM sends wake-ups through Firebase Cloud Messaging's HTTP v1 API, authorised as a
// service account.
type FCM struct {
	project  string
	email    string
	key      *rsa.PrivateKey
	tokenURI string
	baseURL  string // https://fcm.googleapis.com, or a test server
	client   *http.Client
	now      func() time.Time

	mu      sync.Mutex
	access  string
	expires time.Time
}

// ServiceAccount is what FCM needs of a Google service account key file (the JSON the
// Firebase console downloads).
type ServiceAccount struct {
	ProjectID   string `json:"project_id"`
	ClientEmail string `json:"client_email"`
	PrivateKey  string `json:"private_key"`
	TokenURI    string `json:"token_uri"`
}

// fcmScope is the OAuth 2.0 scope of the FCM HTTP v1 API.
const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// NewFCM returns an FCM sender for the service account key file's contents. baseURL
// is where the FCM API is ("" for https://fcm.googleapis.com); client makes the
// requests (nil: http.DefaultClient).
func NewFCM(serviceAccountJSON []byte, baseURL string, client *http.Client) (*FCM, error) {
	var sa ServiceAccount
	if err := json.Unmarshal(serviceAccountJSON, &sa); err != nil {
		return nil, fmt.Errorf("push: FCM service account: %w", err)
	}
	if sa.ProjectID == "" || sa.ClientEmail == "" || sa.TokenURI == "" {
		return nil, errors.New("push: FCM service account: project_id, client_email and token_uri are required")
	}
	block, _ := pem.Decode([]byte(sa.PrivateKey))
	if block == nil {
		return nil, errors.New("push: FCM service account: private_key holds no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("push: FCM service account: private_key: %w", err)
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("push: FCM service account: private_key is a %T, want RSA", k)
	}
	if baseURL == "" {
		baseURL = "https://fcm.googleapis.com"
	}
	if client == nil {
		client = http.DefaultClient
	}
	return &FCM{project: sa.ProjectID, email: sa.ClientEmail, key: key, tokenURI: sa.TokenURI,
		baseURL: strings.TrimRight(baseURL, "/"), client: client, now: time.Now}, nil
}

// Wake sends a data message with no data, high priority, to the app instance whose
// registration token is token: the app wakes and fetches what waits.
func (f *FCM) Wake(ctx context.Context, token string) error {
	access, err := f.accessToken(ctx)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{"message": map[string]any{
		"token":   token,
		"android": map[string]any{"priority": "HIGH"},
		"apns": map[string]any{"headers": map[string]string{"apns-push-type": "background", "apns-priority": "5"},
			"payload": map[string]any{"aps": map[string]any{"content-available": 1}}},
	}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		f.baseURL+"/v1/projects/"+url.PathEscape(f.project)+"/messages:send", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("push: fcm: %w", err)
	}
	defer resp.Body.Close()
	var e struct {
		Error struct {
			Status  string `json:"status"`
			Message string `json:"message"`
			Details []struct {
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	code := e.Error.Status
	for _, d := range e.Error.Details {
		if d.ErrorCode != "" {
			code = d.ErrorCode
		}
	}
	if resp.StatusCode == http.StatusNotFound || code == "UNREGISTERED" {
		return fmt.Errorf("%w: fcm answered %d %s", ErrGone, resp.StatusCode, code)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		f.mu.Lock()
		f.access = "" // get a new access token next time
		f.mu.Unlock()
	}
	return &StatusError{Service: "fcm", StatusCode: resp.StatusCode, Reason: code, RetryAfter: retryAfter(resp.Header)}
}

// accessToken returns an OAuth 2.0 access token for the service account, from the
// cache until five minutes before it expires (RFC 7523's JWT bearer grant).
func (f *FCM) accessToken(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if f.access != "" && now.Add(5*time.Minute).Before(f.expires) {
		return f.access, nil
	}
	assertion, err := signJWT(map[string]any{"alg": "RS256", "typ": "JWT"}, map[string]any{
		"iss": f.email, "scope": fcmScope, "aud": f.tokenURI, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}, f.key)
	if err != nil {
		return "", err
	}
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.tokenURI, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := f.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("push: fcm access token: %w", err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK ||
		tok.AccessToken == "" {
		return "", &StatusError{Service: "fcm token endpoint", StatusCode: resp.StatusCode, RetryAfter: retryAfter(resp.Header)}
	}
	f.access, f.expires = tok.AccessToken, now.Add(time.Duration(tok.ExpiresIn)*time.Second)
	return f.access, nil
}
