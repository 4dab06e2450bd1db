package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/keylog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Business sends messages as one business: it looks recipients up, seals each message
// with e2e for their devices, sends it with an idempotency key, and retries what is
// safe to retry. It is safe for concurrent use.
type Business struct {
	settings
	id     string
	apiKey string
	// signer is the key it signs with; RotateSigningKey changes it.
	signer atomic.Pointer[e2e.SigningKey]
	rpc    heraldv1.MessagingServiceClient

	conn      grpc.ClientConnInterface
	keyLog    *keylog.Verifier // see WithKeyLog
	keyLogErr error            // a bad WithKeyLog key, returned by every lookup
	lookupTTL time.Duration
	mu        sync.Mutex
	lookups   map[lookupKey]lookupEntry
	cursor    string
}

type lookupKey struct {
	recipient string
	category  e2e.Category
}

type lookupEntry struct {
	devices []e2e.Recipient
	expires time.Time
}

// maxLookups bounds the lookup cache; past it, expired entries are dropped, and if
// that is not enough, the whole cache.
const maxLookups = 100_000

// NewBusiness returns a Business that acts as businessID with apiKey (an `hk_…` key
// from the operator) over conn, and signs what it sends with signer, whose public key
// it registers with RegisterSigningKey. conn must not add an authorization of its own.
//
// businessID goes into every sealed message, where devices check it against the
// delivery; it must be the id the operator created the business with. A Business
// that only looks up, records consent or reads statuses may pass a nil signer.
func NewBusiness(conn grpc.ClientConnInterface, businessID, apiKey string, signer *e2e.SigningKey, opts ...BusinessOption) *Business {
	b := &Business{settings: defaultSettings(), id: businessID, apiKey: apiKey,
		rpc: heraldv1.NewMessagingServiceClient(conn), conn: conn, lookupTTL: DefaultLookupTTL, lookups: map[lookupKey]lookupEntry{}}
	b.signer.Store(signer)
	for _, o := range opts {
		o.applyBusiness(b)
	}
	return b
}

// ID is the business id the Business seals into its messages.
func (b *Business) ID() string { return b.id }

// authorized adds the API key to a call's metadata.
func (b *Business) authorized(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+b.apiKey)
}

// RegisterSigningKey registers the public half of the Business's signing key with the
// gateway, which hands it to devices with every delivery. Call it once when the key
// is the business's first; calling it again with the business's current key is
// harmless. When the business has another key it fails with an error that is
// ErrSigningKeyExists: sign with that key (load it where you send from), or, holding
// it, move to a new key with RotateSigningKey.
func (b *Business) RegisterSigningKey(ctx context.Context) error {
	signer := b.signer.Load()
	if signer == nil {
		return errors.New("client: register signing key: the Business has no signing key")
	}
	return b.setSigningKey(ctx, &heraldv1.SetSigningKeyRequest{PublicKey: signer.PublicKey()})
}

// RotateSigningKey moves the business to the signing key next: the Business's current
// key endorses it (e2e.EndorseSigningKey), the gateway registers it as the business's
// current key, and the Business signs with it from then on. Devices that trust the
// old key trust next on that endorsement, without asking anyone; messages signed with
// the old key before still open, and the gateway delivers them with it until the
// business retires it (RetireSigningKey).
//
// Save next's private key (MarshalPrivate) before calling: once this returns, the
// business signs with it. Until the old key is retired it can endorse another key, so
// a next lost before it was saved can be rotated away from.
//
// A business that lost its keys cannot rotate: it asks the operator to replace its
// key (AdminService.ReplaceSigningKey), which every device sees as a key change.
func (b *Business) RotateSigningKey(ctx context.Context, next *e2e.SigningKey) error {
	cur := b.signer.Load()
	if cur == nil || next == nil {
		return errors.New("client: rotate signing key: no current or no next signing key")
	}
	sig, err := e2e.EndorseSigningKey(cur, b.id, next.PublicKey())
	if err != nil {
		return fmt.Errorf("client: rotate signing key: %w", err)
	}
	err = b.setSigningKey(ctx, &heraldv1.SetSigningKeyRequest{PublicKey: next.PublicKey(), Endorsement: sig,
		EndorsedByKeyId: e2e.KeyID(cur.PublicKey())})
	if err != nil {
		return err
	}
	b.signer.CompareAndSwap(cur, next)
	return nil
}

// SigningKeyID is the id of the Business's signing key, as messages name it and
// RetireSigningKey takes it.
func (b *Business) SigningKeyID() string {
	signer := b.signer.Load()
	if signer == nil {
		return ""
	}
	return e2e.KeyID(signer.PublicKey())
}

// RetireSigningKey retires a signing key the business rotated away from (by its
// SigningKeyID): messages still queued that were signed with it are then delivered
// with the current key, and devices refuse them; and it can endorse no more keys.
// Until then the gateway keeps every key, so that a rotation strands no queued
// message. Retire a key once nothing signed with it can still be queued (30 days
// after the last message it signed, at most), and at once if it may have leaked.
func (b *Business) RetireSigningKey(ctx context.Context, keyID string) error {
	return b.retry(ctx, "retire signing key", func(ctx context.Context) error {
		_, err := b.rpc.RetireSigningKey(b.authorized(ctx), &heraldv1.RetireSigningKeyRequest{KeyId: keyID})
		return err
	})
}

func (b *Business) setSigningKey(ctx context.Context, req *heraldv1.SetSigningKeyRequest) error {
	err := b.retry(ctx, "set signing key", func(ctx context.Context) error {
		_, err := b.rpc.SetSigningKey(b.authorized(ctx), req)
		return err
	})
	var se *StatusError
	if errors.As(err, &se) && se.Reason == "SIGNING_KEY_EXISTS" {
		return fmt.Errorf("%w: %w", ErrSigningKeyExists, err)
	}
	return err
}

// Sent is a message the gateway accepted for one recipient.
type Sent struct {
	// Recipient is the phone number as the caller gave it.
	Recipient string
	// MessageID is the gateway's id of the message, which status events name.
	MessageID string
	// ClientMessageID is the idempotency key the message was sent with.
	ClientMessageID string
	// Duplicate is true when the gateway had accepted this client message id for this
	// recipient before: this is the first result again, and nothing was delivered
	// again.
	Duplicate bool
	// DeviceIDs are the devices the message was sealed for (for a Duplicate, by this
	// call; the gateway kept what the first call sent).
	DeviceIDs []string
}

// Send seals plaintext for every device of the recipient to (an E.164 phone number)
// and sends it as a message of category and kind. It returns the accepted message, or
// a *RejectedError when the gateway refuses it by policy, or another typed error (see
// the package doc).
//
// The recipient's devices come from a cache (WithLookupTTL) or a LookupRecipient
// call. If the gateway answers that they changed (OUTCOME_STALE_DEVICES: a new device,
// a rotated key), Send looks them up again and resends once, with the same client
// message id. UNAVAILABLE and RESOURCE_EXHAUSTED are retried as WithRetry says.
func (b *Business) Send(ctx context.Context, to string, category e2e.Category, kind e2e.Kind, plaintext []byte, opts ...SendOption) (*Sent, error) {
	o, err := b.sendOptions(opts)
	if err != nil {
		return nil, err
	}
	h := e2e.Header{BusinessID: b.id, Category: category, Kind: kind, ClientMessageID: o.clientMessageID, SentTime: b.now()}
	signer := b.signer.Load()
	if signer == nil {
		return nil, errors.New("client: send: the Business has no signing key")
	}
	for refreshed := false; ; refreshed = true {
		devices, err := b.devices(ctx, to, category, refreshed)
		if err != nil {
			return nil, err
		}
		sealed, err := e2e.Seal(signer, h, plaintext, devices)
		if err != nil {
			return nil, fmt.Errorf("client: send: %w", err)
		}
		msg := message(to, h, sealed, devices, o.ttl, signer)
		var resp *heraldv1.SendResponse
		err = b.retry(ctx, "send", func(ctx context.Context) error {
			var err error
			resp, err = b.rpc.Send(b.authorized(ctx), &heraldv1.SendRequest{Message: msg})
			return err
		})
		if err != nil {
			return nil, err
		}
		r := resp.GetResult()
		switch {
		case r.GetOutcome() == heraldv1.Outcome_OUTCOME_ACCEPTED:
			return sent(to, h.ClientMessageID, r, devices), nil
		case r.GetOutcome() == heraldv1.Outcome_OUTCOME_STALE_DEVICES && !refreshed:
			b.log.DebugContext(ctx, "herald: devices changed; looking up again", "client_message_id", h.ClientMessageID)
			continue
		}
		b.forget(to, category)
		return nil, rejected(to, r)
	}
}

func (b *Business) sendOptions(opts []SendOption) (sendOptions, error) {
	var o sendOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.clientMessageID == "" {
		o.clientMessageID = newClientMessageID()
	}
	if b.id == "" {
		return o, errors.New("client: send: the Business has no business id")
	}
	return o, nil
}

// newClientMessageID is an idempotency key for a message the caller did not name: 128
// random bits, in the characters the gateway allows.
func newClientMessageID() string { return "sdk-" + rand.Text() }

// message is the Message for one recipient: the sealed body once, each of its devices'
// wraps as that device's envelope, and the id of the key it was signed with, so that
// its deliveries carry that key even if the business rotates it meanwhile.
func message(to string, h e2e.Header, s *e2e.Sealed, devices []e2e.Recipient, ttl time.Duration, signer *e2e.SigningKey) *heraldv1.Message {
	m := &heraldv1.Message{Recipient: to, Category: heraldv1.Category(h.Category), Kind: heraldv1.Kind(h.Kind),
		ClientMessageId: h.ClientMessageID, Body: s.Body, SigningKeyId: e2e.KeyID(signer.PublicKey())}
	if ttl > 0 {
		m.Ttl = durationpb.New(ttl)
	}
	for _, d := range devices {
		m.Envelopes = append(m.Envelopes, &heraldv1.Envelope{DeviceId: d.DeviceID, Ciphertext: s.Wraps[d.DeviceID],
			KeyId: e2e.KeyID(d.PublicKey)})
	}
	return m
}

func sent(to, clientID string, r *heraldv1.Result, devices []e2e.Recipient) *Sent {
	s := &Sent{Recipient: to, MessageID: r.GetMessageId(), ClientMessageID: clientID, Duplicate: r.GetDuplicate()}
	for _, d := range devices {
		s.DeviceIDs = append(s.DeviceIDs, d.DeviceID)
	}
	return s
}

// devices returns the devices to seal for, from the cache unless fresh is set or the
// entry expired, else from LookupRecipient. A recipient the gateway would reject is a
// *RejectedError.
func (b *Business) devices(ctx context.Context, to string, category e2e.Category, fresh bool) ([]e2e.Recipient, error) {
	key := lookupKey{to, category}
	now := b.now()
	if !fresh {
		b.mu.Lock()
		e, ok := b.lookups[key]
		b.mu.Unlock()
		if ok && now.Before(e.expires) {
			return e.devices, nil
		}
	}
	devices, err := b.Lookup(ctx, to, category)
	if err != nil {
		b.forget(to, category)
		return nil, err
	}
	if b.lookupTTL > 0 {
		b.mu.Lock()
		if len(b.lookups) >= maxLookups {
			for k, e := range b.lookups {
				if !now.Before(e.expires) {
					delete(b.lookups, k)
				}
			}
			if len(b.lookups) >= maxLookups {
				clear(b.lookups)
			}
		}
		b.lookups[key] = lookupEntry{devices: devices, expires: now.Add(b.lookupTTL)}
		b.mu.Unlock()
	}
	return devices, nil
}

func (b *Business) forget(to string, category e2e.Category) {
	b.mu.Lock()
	delete(b.lookups, lookupKey{to, category})
	b.mu.Unlock()
}

// Lookup asks the gateway for the devices of the recipient to (an E.164 phone
// number), to seal a message of category for. If such a message would be rejected, it
// returns a *RejectedError and no devices. It bypasses Send's cache; note that the
// gateway counts a lookup of someone the business has not messaged lately against its
// daily new-recipient allowance, as it tells whether the number is registered.
func (b *Business) Lookup(ctx context.Context, to string, category e2e.Category) ([]e2e.Recipient, error) {
	var resp *heraldv1.LookupRecipientResponse
	err := b.retry(ctx, "lookup recipient", func(ctx context.Context) error {
		var err error
		resp, err = b.rpc.LookupRecipient(b.authorized(ctx), &heraldv1.LookupRecipientRequest{Recipient: to, Category: heraldv1.Category(category)})
		return err
	})
	if err != nil {
		return nil, err
	}
	if resp.GetOutcome() != heraldv1.Outcome_OUTCOME_ACCEPTED {
		return nil, &RejectedError{Recipient: to, Outcome: resp.GetOutcome()}
	}
	if err := b.verifyKeys(ctx, resp); err != nil {
		return nil, err
	}
	devices := make([]e2e.Recipient, 0, len(resp.GetDevices()))
	for _, d := range resp.GetDevices() {
		devices = append(devices, e2e.Recipient{DeviceID: d.GetDeviceId(), PublicKey: d.GetPublicKey(),
			Algorithm: e2e.Algorithm(d.GetKeyAlgorithm())})
	}
	if len(devices) == 0 {
		return nil, &RejectedError{Recipient: to, Outcome: heraldv1.Outcome_OUTCOME_UNKNOWN_RECIPIENT}
	}
	return devices, nil
}

// Consent is a person's choice about one business and one category.
type Consent = heraldv1.Consent

// The two choices a person or a business can record.
const (
	OptedIn  = heraldv1.Consent_CONSENT_OPTED_IN
	OptedOut = heraldv1.Consent_CONSENT_OPTED_OUT
)

// Evidence says how the business collected a consent; the gateway keeps it with the
// record.
type Evidence struct {
	// Source is where it was collected, 1 to 64 characters, e.g. "checkout-form".
	Source string
	// CollectedTime is when the person gave it; not in the future.
	CollectedTime time.Time
	// Reference is the business's own reference (a form id, a ticket); optional.
	Reference string
}

// ConsentResult is what governs after RecordConsent.
type ConsentResult struct {
	// Effective is the consent that governs this business and category now.
	Effective Consent
	// OverriddenByRecipient is true when the person's own choice (or block) governs
	// rather than what the business recorded.
	OverriddenByRecipient bool
}

// RecordConsent records an opt-in or opt-out that the business collected from the
// recipient to, with its evidence. It never overrides the person's own choice. For a
// person the business has not reached in the window it spends the business's
// new-recipient allowance, as a send does: beyond it, the error is a *RejectedError
// with OUTCOME_NEW_RECIPIENT_LIMITED and nothing was recorded.
func (b *Business) RecordConsent(ctx context.Context, to string, category e2e.Category, consent Consent, ev Evidence) (*ConsentResult, error) {
	var resp *heraldv1.RecordConsentResponse
	err := b.retry(ctx, "record consent", func(ctx context.Context) error {
		var err error
		resp, err = b.rpc.RecordConsent(b.authorized(ctx), &heraldv1.RecordConsentRequest{Recipient: to,
			Category: heraldv1.Category(category), Consent: consent,
			Evidence: &heraldv1.ConsentEvidence{Source: ev.Source, CollectedTime: timestamppb.New(ev.CollectedTime), Reference: ev.Reference}})
		return err
	})
	var rej *RejectedError
	if errors.As(err, &rej) {
		rej.Recipient = to
	}
	if err != nil {
		return nil, err
	}
	return &ConsentResult{Effective: resp.GetEffectiveConsent(), OverriddenByRecipient: resp.GetOverriddenByRecipient()}, nil
}
