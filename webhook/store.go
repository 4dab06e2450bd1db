package webhook

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/redis/go-redis/v9"
)

// Store keeps businesses' webhooks.
type Store struct {
	rdb redis.UniversalClient
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// ErrNoWebhook is a business without a webhook.
var ErrNoWebhook = errors.New("webhook: the business has no webhook")

// ErrBadURL is a webhook URL that is not an absolute https URL.
var ErrBadURL = errors.New("webhook: the URL must be an absolute https:// URL")

// prevSecretLife is how long a rotated-away secret still signs, so that a receiver can
// switch without losing events.
const prevSecretLife = 24 * time.Hour

// CheckURL checks that rawURL can be a webhook: https, a host, no credentials, at
// most 2048 bytes.
func CheckURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || len(rawURL) > 2048 || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return ErrBadURL
	}
	return nil
}

// Set makes rawURL the business's webhook, from the events after those in its stream
// now, with a new secret, which it returns; failures and a given-up delivery are
// forgotten. Setting the same URL again is how a business resumes after delivery was
// given up (the events of the gap stay in StreamStatus).
func (s *Store) Set(ctx context.Context, business, rawURL string, now time.Time) (string, error) {
	if err := CheckURL(rawURL); err != nil {
		return "", err
	}
	b := keys.Business(business)
	last, err := s.rdb.XRevRangeN(ctx, b.Statuses(), "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("set webhook: %w", err)
	}
	cursor := "0-0"
	if len(last) > 0 {
		cursor = last[0].ID
	}
	secret := newSecret()
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, b.Webhook())
		p.HSet(ctx, b.Webhook(), keys.WebhookURL, rawURL, keys.WebhookSecret, secret, keys.WebhookCursor, cursor,
			keys.WebhookDelivered, 0)
		return nil
	})
	if err == nil {
		err = s.rdb.SAdd(ctx, keys.Webhooks(), business).Err()
	}
	if err != nil {
		return "", fmt.Errorf("set webhook: %w", err)
	}
	return secret, nil
}

// Rotate gives the business's webhook a new secret, which it returns; the previous
// one signs too for a day (each request carries both signatures), so that the
// receiver can switch without refusing events.
func (s *Store) Rotate(ctx context.Context, business string, now time.Time) (string, error) {
	b := keys.Business(business)
	old, err := s.rdb.HGet(ctx, b.Webhook(), keys.WebhookSecret).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrNoWebhook
	}
	if err != nil {
		return "", fmt.Errorf("rotate webhook secret: %w", err)
	}
	secret := newSecret()
	if err := s.rdb.HSet(ctx, b.Webhook(), keys.WebhookSecret, secret, keys.WebhookPrevSecret, old,
		keys.WebhookPrevUntil, now.Add(prevSecretLife).UnixMilli()).Err(); err != nil {
		return "", fmt.Errorf("rotate webhook secret: %w", err)
	}
	return secret, nil
}

// Delete removes the business's webhook.
func (s *Store) Delete(ctx context.Context, business string) error {
	b := keys.Business(business)
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, b.Webhook(), b.WebhookLease())
		p.SRem(ctx, keys.Webhooks(), business)
		return nil
	}); err != nil {
		return fmt.Errorf("delete webhook: %w", err)
	}
	return nil
}

// State is how a business's webhook fares, for the operator and the business.
type State struct {
	URL string
	// Delivered is how many events were delivered since it was set.
	Delivered int64
	// FailingSince is when the failures in a row began; zero when the last attempt
	// succeeded.
	FailingSince time.Time
	Attempts     int
	LastError    string
	// NextAttempt is when it is tried next, while failing.
	NextAttempt time.Time
	// GaveUp is when delivery was given up (failing for longer than the retry
	// window); zero while it goes on.
	GaveUp time.Time
}

// Get returns the business's webhook state, without its secrets.
func (s *Store) Get(ctx context.Context, business string) (State, error) {
	h, err := s.rdb.HGetAll(ctx, keys.Business(business).Webhook()).Result()
	if err != nil {
		return State{}, fmt.Errorf("get webhook: %w", err)
	}
	if len(h) == 0 {
		return State{}, ErrNoWebhook
	}
	r, err := keys.ParseWebhook(h)
	if err != nil {
		return State{}, err
	}
	return State{URL: r.URL, Delivered: r.Delivered, FailingSince: r.FailingSince, Attempts: r.Attempts,
		LastError: r.LastError, NextAttempt: r.NextAttempt, GaveUp: r.GaveUp}, nil
}

func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "whsec_" + base64.RawURLEncoding.EncodeToString(b)
}
