package webhook

import (
	"bytes"
	"context"
	crand "crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/egress"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
	"github.com/redis/go-redis/v9"
)

var (
	//go:embed lease.lua
	leaseSource string
	//go:embed advance.lua
	advanceSource string
	//go:embed fail.lua
	failSource string

	leaseScript   = rscript.New(leaseSource)
	advanceScript = rscript.New(keys.Lua(advanceSource))
	failScript    = rscript.New(failSource)
)

// Dispatcher delivers the webhooks of every business that has one; every gateway
// runs one (Run), and the lease per business makes one of them deliver each.
type Dispatcher struct {
	rdb     redis.UniversalClient
	id      string // this dispatcher, in leases
	client  *http.Client
	log     *slog.Logger
	now     func() time.Time
	window  time.Duration // see WithRetryWindow
	poll    time.Duration
	minWait time.Duration
	maxWait time.Duration
	timeout time.Duration

	mu     sync.Mutex
	active map[string]bool // businesses being delivered by this dispatcher now
	sem    chan struct{}

	delivered, failed, gaveUp atomic.Int64
}

// Stats counts what this dispatcher did: events delivered, attempts that failed, and
// webhooks it gave up on.
type Stats struct{ Delivered, Failed, GaveUp int64 }

// Stats returns the counts so far, for metrics.
func (d *Dispatcher) Stats() Stats {
	return Stats{Delivered: d.delivered.Load(), Failed: d.failed.Load(), GaveUp: d.gaveUp.Load()}
}

// Option configures a Dispatcher.
type Option func(*Dispatcher)

// WithLogger sends the Dispatcher's logs to l (failures, give-ups); they name the
// business, never the secret or the event.
func WithLogger(l *slog.Logger) Option { return func(d *Dispatcher) { d.log = l } }

// WithClock makes the Dispatcher read time from now.
func WithClock(now func() time.Time) Option { return func(d *Dispatcher) { d.now = now } }

// WithRetryWindow sets how long failures in a row go on before delivery is given up
// (default 24 h).
func WithRetryWindow(w time.Duration) Option { return func(d *Dispatcher) { d.window = w } }

// WithBackoff sets the wait after the first failure and the longest wait (default 1 s
// and 1 h); each failure in a row doubles it, with jitter.
func WithBackoff(first, longest time.Duration) Option {
	return func(d *Dispatcher) { d.minWait, d.maxWait = first, longest }
}

// WithPollInterval sets how often the Dispatcher looks for events to deliver
// (default 1 s): it bounds how late an event reaches a webhook that works.
func WithPollInterval(p time.Duration) Option { return func(d *Dispatcher) { d.poll = p } }

// WithPrivateAddresses lets webhooks reach loopback, private and link-local addresses:
// for tests, and for an operator whose businesses are inside its own network.
func WithPrivateAddresses() Option {
	return func(d *Dispatcher) {
		d.client.Transport.(*http.Transport).DialContext = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
}

// WithTLSConfig sets the TLS client configuration of webhook requests (default: the
// system roots), as tests that run a receiver with their own certificate need.
func WithTLSConfig(f func(*http.Transport)) Option {
	return func(d *Dispatcher) { f(d.client.Transport.(*http.Transport)) }
}

// New returns a Dispatcher on rdb.
func New(rdb redis.UniversalClient, opts ...Option) *Dispatcher {
	id := make([]byte, 8)
	crand.Read(id)
	d := &Dispatcher{rdb: rdb, id: hex.EncodeToString(id), log: slog.New(slog.DiscardHandler), now: time.Now,
		window: 24 * time.Hour, poll: time.Second, minWait: time.Second, maxWait: time.Hour, timeout: 10 * time.Second,
		active: map[string]bool{}, sem: make(chan struct{}, 16)}
	d.client = egress.Client(false, d.timeout)
	for _, o := range opts {
		o(d)
	}
	return d
}

// Run delivers webhooks until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	t := time.NewTicker(d.poll)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		businesses, err := d.rdb.SMembers(ctx, keys.Webhooks()).Result()
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("webhooks: cannot list them; will retry", "err", err)
			}
			continue
		}
		for _, b := range businesses {
			d.mu.Lock()
			busy := d.active[b]
			d.active[b] = true
			d.mu.Unlock()
			if busy {
				continue
			}
			select {
			case d.sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() {
					<-d.sem
					d.mu.Lock()
					delete(d.active, b)
					d.mu.Unlock()
				}()
				if err := d.deliver(ctx, b); err != nil && ctx.Err() == nil {
					d.log.Warn("webhooks: delivery pass failed; will retry", "business_id", b, "err", err)
				}
			})
		}
	}
}

// leaseTime is how long a lease lasts unrenewed: longer than one request may take.
const leaseTime = 30 * time.Second

// deliver sends the business's undelivered events, in order, while it holds the
// lease and the endpoint answers 2xx.
func (d *Dispatcher) deliver(ctx context.Context, business string) error {
	b := keys.Business(business)
	for {
		held, err := leaseScript.Run(ctx, d.rdb, []string{b.WebhookLease()}, d.id, leaseTime.Milliseconds()).Int()
		if err != nil || held != 1 {
			return err
		}
		h, err := d.rdb.HGetAll(ctx, b.Webhook()).Result()
		if err != nil {
			return err
		}
		if len(h) == 0 {
			return d.rdb.SRem(ctx, keys.Webhooks(), business).Err()
		}
		rec, err := keys.ParseWebhook(h)
		if err != nil {
			return err
		}
		now := d.now()
		if !rec.GaveUp.IsZero() || now.Before(rec.NextAttempt) {
			return nil
		}
		entries, err := d.rdb.XRangeN(ctx, b.Statuses(), "("+rec.Cursor, "+", 32).Result()
		if err != nil || len(entries) == 0 {
			return err
		}
		secrets := []string{rec.Secret}
		if rec.PrevSecret != "" && now.Before(rec.PrevUntil) {
			secrets = append(secrets, rec.PrevSecret)
		}
		for _, x := range entries {
			if err := d.post(ctx, rec.URL, business, x, secrets); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return d.fail(ctx, business, rec.Attempts, err)
			}
			d.delivered.Add(1)
			moved, err := advanceScript.Run(ctx, d.rdb, []string{b.Webhook(), b.WebhookLease()}, d.id, x.ID,
				leaseTime.Milliseconds()).Int()
			if err != nil || moved != 1 {
				return err // the lease was lost, or the webhook was set again: start over next pass
			}
		}
	}
}

// fail records a failed delivery and when to try again.
func (d *Dispatcher) fail(ctx context.Context, business string, attempts int, cause error) error {
	wait := d.minWait << min(attempts, 20)
	if wait <= 0 || wait > d.maxWait {
		wait = d.maxWait
	}
	wait = wait/2 + rand.N(wait/2+1) // jitter, so that many failing webhooks do not retry in step
	now := d.now()
	b := keys.Business(business)
	msg := cause.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	gave, err := failScript.Run(ctx, d.rdb, []string{b.Webhook(), b.WebhookLease()}, d.id, now.UnixMilli(),
		now.Add(wait).UnixMilli(), msg, d.window.Milliseconds()).Int()
	if err != nil {
		return err
	}
	d.failed.Add(1)
	if gave == 1 {
		d.gaveUp.Add(1)
		d.log.Warn("webhooks: delivery given up after failing for the retry window", "business_id", business,
			"window", d.window, "err", msg)
	} else {
		d.log.Info("webhooks: delivery failed; will retry", "business_id", business, "attempts", attempts+1,
			"retry_in", wait, "err", msg)
	}
	return nil
}

// Event is a status event as a webhook receives it (the JSON body of one request).
type Event struct {
	// ID is stable across retries: drop a repeat by it.
	ID              string    `json:"id"`
	Type            string    `json:"type"`
	BusinessID      string    `json:"business_id"`
	MessageID       string    `json:"message_id"`
	ClientMessageID string    `json:"client_message_id"`
	DeviceID        string    `json:"device_id,omitempty"`
	Status          string    `json:"status"`
	Time            time.Time `json:"time"`
	// FailureReason says why the device refused it (status FAILED only).
	FailureReason string `json:"failure_reason,omitempty"`
}

var statusNames = map[string]string{
	keys.StatusAccepted: "ACCEPTED", keys.StatusDelivered: "DELIVERED", keys.StatusRead: "READ",
	keys.StatusExpired: "EXPIRED", keys.StatusFailed: "FAILED",
}

// post sends one stream entry to the webhook.
func (d *Dispatcher) post(ctx context.Context, url, business string, x redis.XMessage, secrets []string) error {
	e, err := keys.ParseStreamEvent(business, x.Values)
	if err != nil {
		return nil // not an event Herald wrote: nothing true to send, skip it
	}
	body, err := json.Marshal(Event{ID: "evt_" + x.ID, Type: "message.status", BusinessID: business, MessageID: e.MessageID,
		ClientMessageID: e.ClientMessageID, DeviceID: e.DeviceID, Status: statusNames[e.Status], Time: e.Time.UTC(),
		FailureReason: strings.ToUpper(e.Reason)})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Herald-Webhook/1")
	req.Header.Set(SignatureHeader, Sign(d.now(), body, secrets...))
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the endpoint answered %d", resp.StatusCode)
	}
	return nil
}
