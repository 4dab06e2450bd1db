package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/keylog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Device is a person's device: its id and token, its key pairs, the business keys it
// pinned and the messages it has accepted. It receives, verifies and decrypts
// messages, acknowledges them, and carries the person's choices (blocks, consents,
// reports) to the gateway. It is safe for concurrent use.
//
// All of it is the device's own state: MarshalState writes it for the device to keep
// in its private storage, and LoadDevice reads it back. It changes when the device
// opens a message (a new pin, a message to remember), acknowledges, rotates its key or
// trusts a key: save it after each.
type Device struct {
	settings
	rpc heraldv1.RecipientServiceClient

	mu    sync.Mutex
	id    string
	token string
	// keys are the device's key pairs, the current one first, then the retired ones
	// still kept for messages sealed to them before the rotation.
	keys []deviceKey
	// pins maps a business id to the signing key the device trusts for it: the first
	// it saw, or the last one a trusted key endorsed (or the person trusted).
	pins map[string]ed25519.PublicKey
	// earlier are the keys pinned before a business rotated, newest first, still
	// trusted for RetiredKeyRetention so that messages queued before the rotation open.
	earlier map[string][]earlierPin
	// accepted are messages opened and returned but not yet acknowledged, by message id.
	accepted map[string]record
	// acked are messages acknowledged, by message id and by business and client
	// message id: a delivery matching either is a replay.
	acked      map[string]record
	ackedPairs map[pair]bool
	// pending and activate say whether the device waited for approval when it
	// registered, and until when at most.
	pending  bool
	activate time.Time
	// notices gets the notices about the person's devices (WithDeviceNotices).
	notices func(context.Context, DeviceNotice)
	// conn, keyLog and keyLogErr check business keys against the key log (WithKeyLog);
	// checkpoints are those it accepted, by signed note, for Open.
	conn        grpc.ClientConnInterface
	keyLog      *keylog.Verifier
	keyLogErr   error
	checkpoints map[string]keylog.Checkpoint
}

type deviceKey struct {
	key *e2e.DeviceKey
	// retired is when the key was replaced; zero for the current key.
	retired time.Time
}

// earlierPin is a business key the device trusted before the business rotated.
type earlierPin struct {
	key ed25519.PublicKey
	// until is when the device stops trusting it.
	until time.Time
}

// maxEarlierPins is how many earlier keys of one business the device trusts at most.
const maxEarlierPins = 16

// record is what the device remembers of an accepted message to refuse its replay.
type record struct {
	MessageID       string    `json:"message_id"`
	BusinessID      string    `json:"business_id"`
	ClientMessageID string    `json:"client_message_id"`
	SentTime        time.Time `json:"sent_time"`
}

type pair struct{ business, clientMessageID string }

func (r record) pair() pair { return pair{r.BusinessID, r.ClientMessageID} }

// Retention of the device's memory. Messages live at most 30 days in a mailbox, so a
// retired key is not needed, and a replay not possible, for longer than that (plus a
// day for clocks that disagree).
const (
	// RetiredKeyRetention is how long a retired key is kept after RotateKey, and how
	// long a business's key stays trusted after the business rotated away from it.
	RetiredKeyRetention = 31 * 24 * time.Hour
	// ReplayWindow is how long the device remembers an acknowledged message; one
	// sealed longer ago than that is refused as a replay (ErrReplay), since the device
	// could no longer tell.
	ReplayWindow = 31 * 24 * time.Hour
)

func newDevice(conn grpc.ClientConnInterface, opts []DeviceOption) *Device {
	d := &Device{settings: defaultSettings(), rpc: heraldv1.NewRecipientServiceClient(conn), conn: conn,
		checkpoints: map[string]keylog.Checkpoint{},
		pins:        map[string]ed25519.PublicKey{}, earlier: map[string][]earlierPin{}, accepted: map[string]record{},
		acked: map[string]record{}, ackedPairs: map[pair]bool{}}
	for _, o := range opts {
		o.applyDevice(d)
	}
	return d
}

// Register makes this a device of the person with the phone number (E.164), proved by
// code, the one-time code the operator sent there: it generates a key pair of alg
// (e2e.MLKEM768X25519 unless the device must stay small) and registers its public
// half. The private key never leaves the returned Device but inside MarshalState;
// save that before anything else, as it is the only copy.
//
// Register is not retried: a code is spent by the first call that reaches Redis.
func Register(ctx context.Context, conn grpc.ClientConnInterface, phone, code string, alg e2e.Algorithm, opts ...DeviceOption) (*Device, error) {
	key, err := e2e.GenerateDeviceKey(alg)
	if err != nil {
		return nil, err
	}
	d := newDevice(conn, opts)
	resp, err := d.rpc.RegisterDevice(ctx, &heraldv1.RegisterDeviceRequest{PhoneNumber: phone, Code: code,
		PublicKey: key.PublicKey(), KeyAlgorithm: heraldv1.KeyAlgorithm(alg)})
	if err != nil {
		return nil, callError(ctx, "register device", err)
	}
	if resp.GetKeyId() != "" && resp.GetKeyId() != key.KeyID() {
		return nil, fmt.Errorf("client: register device: the gateway registered key %s, not this device's %s", resp.GetKeyId(), key.KeyID())
	}
	d.id, d.token = resp.GetDeviceId(), resp.GetDeviceToken()
	d.keys = []deviceKey{{key: key}}
	d.pending = resp.GetPending()
	if resp.GetActivateTime() != nil {
		d.activate = resp.GetActivateTime().AsTime()
	}
	return d, nil
}

// ID is the device's id, which businesses address envelopes to.
func (d *Device) ID() string { return d.id }

// KeyID is the id of the device's current key (e2e.KeyID of its public key).
func (d *Device) KeyID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.keys[0].key.KeyID()
}

// authorized adds the device token to a call's metadata.
func (d *Device) authorized(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+d.token)
}

// Ack acknowledges messages as delivered: the business sees STATUS_DELIVERED, the
// gateway stops sending them, and the device refuses them from now on as replays.
// Ids the gateway no longer holds (expired) are not an error.
func (d *Device) Ack(ctx context.Context, ids ...string) error { return d.ack(ctx, ids, false) }

// Read acknowledges messages as read (which implies delivered): the business sees
// STATUS_READ.
func (d *Device) Read(ctx context.Context, ids ...string) error { return d.ack(ctx, ids, true) }

// RejectReason is why a device refused a delivery, as the business sees it on its
// STATUS_FAILED event.
type RejectReason = heraldv1.RejectReason

// The reasons.
const (
	RejectBadSignature   = heraldv1.RejectReason_REJECT_REASON_BAD_SIGNATURE
	RejectUnknownKey     = heraldv1.RejectReason_REJECT_REASON_UNKNOWN_KEY
	RejectCannotDecrypt  = heraldv1.RejectReason_REJECT_REASON_CANNOT_DECRYPT
	RejectHeaderMismatch = heraldv1.RejectReason_REJECT_REASON_HEADER_MISMATCH
	RejectReplay         = heraldv1.RejectReason_REJECT_REASON_REPLAY
)

// RejectReasonOf is the reason to report for an error Open returned (the Reason of a
// *RejectedDeliveryError): a bad signature, a key the device lacks (the business's
// signing key, or the device key the envelope was sealed to), a header that does not
// match, a replay, or else an envelope that does not open.
func RejectReasonOf(err error) RejectReason {
	switch {
	case errors.Is(err, e2e.ErrBadSignature):
		return RejectBadSignature
	case errors.Is(err, ErrNoSigningKey), errors.Is(err, e2e.ErrNotForThisDevice):
		return RejectUnknownKey
	case errors.Is(err, e2e.ErrHeaderMismatch):
		return RejectHeaderMismatch
	case errors.Is(err, ErrReplay):
		return RejectReplay
	}
	return RejectCannotDecrypt
}

// Reject reports that the device refused a delivery, and why: the gateway drops it
// from the device's mailbox and the business sees STATUS_FAILED with the reason, never
// STATUS_DELIVERED. Receive does this by itself for every delivery it refuses; call it
// when the application refuses one Open accepted. The device refuses the message from
// now on as a replay.
func (d *Device) Reject(ctx context.Context, id string, reason RejectReason) error {
	err := d.retry(ctx, "ack", func(ctx context.Context) error {
		_, err := d.rpc.Ack(d.authorized(ctx), &heraldv1.AckRequest{
			Rejections: []*heraldv1.Rejection{{MessageId: id, Reason: reason}}})
		return err
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	if r, ok := d.accepted[id]; ok {
		delete(d.accepted, id)
		d.acked[id] = r
		d.ackedPairs[r.pair()] = true
	}
	d.mu.Unlock()
	return nil
}

// maxAck is how many ids one Ack call takes.
const maxAck = 1000

func (d *Device) ack(ctx context.Context, ids []string, read bool) error {
	for len(ids) > 0 {
		n := min(len(ids), maxAck)
		batch := ids[:n]
		ids = ids[n:]
		err := d.retry(ctx, "ack", func(ctx context.Context) error {
			_, err := d.rpc.Ack(d.authorized(ctx), &heraldv1.AckRequest{MessageIds: batch, Read: read})
			return err
		})
		if err != nil {
			return err
		}
		d.mu.Lock()
		for _, id := range batch {
			if r, ok := d.accepted[id]; ok {
				delete(d.accepted, id)
				d.acked[id] = r
				d.ackedPairs[r.pair()] = true
			}
		}
		d.mu.Unlock()
	}
	return nil
}

// Block stops every message from the business; once Block returns, no later message
// from it is admitted.
func (d *Device) Block(ctx context.Context, businessID string) error {
	return d.retry(ctx, "block", func(ctx context.Context) error {
		_, err := d.rpc.Block(d.authorized(ctx), &heraldv1.BlockRequest{BusinessId: businessID})
		return err
	})
}

// Unblock lifts a block.
func (d *Device) Unblock(ctx context.Context, businessID string) error {
	return d.retry(ctx, "unblock", func(ctx context.Context) error {
		_, err := d.rpc.Unblock(d.authorized(ctx), &heraldv1.UnblockRequest{BusinessId: businessID})
		return err
	})
}

// SetConsent opts the person in (OptedIn) or out (OptedOut) of one category of
// messages from one business. The person's choice beats anything the business
// recorded.
func (d *Device) SetConsent(ctx context.Context, businessID string, category e2e.Category, consent Consent) error {
	return d.retry(ctx, "set consent", func(ctx context.Context) error {
		_, err := d.rpc.SetConsent(d.authorized(ctx), &heraldv1.SetConsentRequest{BusinessId: businessID,
			Category: heraldv1.Category(category), Consent: consent})
		return err
	})
}

// Preference is the person's relation to one business.
type Preference struct {
	BusinessID  string
	DisplayName string
	Blocked     bool
	// Consents has one entry per category.
	Consents []CategoryConsent
	// LastMessageTime is when the business last had a message admitted for the
	// person; zero if never.
	LastMessageTime time.Time
}

// CategoryConsent is the consent for one category and where it came from.
type CategoryConsent struct {
	Category e2e.Category
	// Consent governs now; CONSENT_UNSPECIFIED means the category's default
	// (transactional allowed, marketing not).
	Consent Consent
	// SetBy says who set it: SETTER_RECIPIENT or SETTER_BUSINESS.
	SetBy heraldv1.Setter
	// UpdateTime is when it was set.
	UpdateTime time.Time
	// Source and Reference are the business's evidence, for SETTER_BUSINESS.
	Source, Reference string
}

// Preferences lists every business that has messaged the person or that the person
// set a preference for.
func (d *Device) Preferences(ctx context.Context) ([]Preference, error) {
	var resp *heraldv1.ListPreferencesResponse
	err := d.retry(ctx, "list preferences", func(ctx context.Context) error {
		var err error
		resp, err = d.rpc.ListPreferences(d.authorized(ctx), &heraldv1.ListPreferencesRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	var ps []Preference
	for _, b := range resp.GetBusinesses() {
		p := Preference{BusinessID: b.GetBusinessId(), DisplayName: b.GetDisplayName(), Blocked: b.GetBlocked()}
		if b.GetLastMessageTime() != nil {
			p.LastMessageTime = b.GetLastMessageTime().AsTime()
		}
		for _, c := range b.GetConsents() {
			cc := CategoryConsent{Category: e2e.Category(c.GetCategory()), Consent: c.GetConsent(), SetBy: c.GetSetBy(),
				Source: c.GetSource(), Reference: c.GetReference()}
			if c.GetUpdateTime() != nil {
				cc.UpdateTime = c.GetUpdateTime().AsTime()
			}
			p.Consents = append(p.Consents, cc)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// ReportReason says what is wrong with a message the person reports.
type ReportReason = heraldv1.ReportReason

// The reasons of ReportSpam.
const (
	// ReasonSpam is an unwanted message.
	ReasonSpam = heraldv1.ReportReason_REPORT_REASON_SPAM
	// ReasonMislabeledCategory is marketing sent as transactional, or any category or
	// kind that does not fit the content.
	ReasonMislabeledCategory = heraldv1.ReportReason_REPORT_REASON_MISLABELED_CATEGORY
)

// ReportSpam reports a message delivered to this device (by Message.ID). Reports
// count against the sender's quality; past the operator's threshold its limits step
// down. Reporting a message twice counts once. Reporting does not block the business:
// call Block for that.
func (d *Device) ReportSpam(ctx context.Context, messageID string, reason ReportReason) error {
	return d.retry(ctx, "report spam", func(ctx context.Context) error {
		_, err := d.rpc.ReportSpam(d.authorized(ctx), &heraldv1.ReportSpamRequest{MessageId: messageID, Reason: reason})
		return err
	})
}

// RotateKey replaces the device's key pair with a new one of the same algorithm and
// registers it. Businesses that seal to the old key from now on get STALE_DEVICES and
// look the device up again; messages already queued for the old key still open, as
// the device keeps the old private key for RetiredKeyRetention. Save MarshalState
// right after: it is the only copy of the new key.
func (d *Device) RotateKey(ctx context.Context) error {
	d.mu.Lock()
	current := d.keys[0].key
	d.mu.Unlock()
	alg := current.Algorithm()
	key, err := e2e.GenerateDeviceKey(alg)
	if err != nil {
		return err
	}
	var resp *heraldv1.RotateKeyResponse
	err = d.retry(ctx, "rotate key", func(ctx context.Context) error {
		// The gateway rotates only for the holder of the current key: it seals a
		// challenge to it, and the answer is what is inside.
		ch, err := d.rpc.GetKeyChallenge(d.authorized(ctx), &heraldv1.GetKeyChallengeRequest{})
		if err != nil {
			return err
		}
		answer, err := current.OpenChallenge(ch.GetChallenge())
		if err != nil {
			return fmt.Errorf("client: rotate key: %w", err)
		}
		resp, err = d.rpc.RotateKey(d.authorized(ctx), &heraldv1.RotateKeyRequest{PublicKey: key.PublicKey(),
			KeyAlgorithm: heraldv1.KeyAlgorithm(alg), ChallengeResponse: answer, ChallengeExpireTime: ch.GetExpireTime()})
		return err
	})
	if err != nil {
		return err
	}
	if resp.GetKeyId() != "" && resp.GetKeyId() != key.KeyID() {
		return fmt.Errorf("client: rotate key: the gateway registered key %s, not this device's %s", resp.GetKeyId(), key.KeyID())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keys[0].retired = d.now()
	d.keys = append([]deviceKey{{key: key}}, d.keys...)
	return nil
}

// TrustKey pins key as the signing key of the business, in place of every key trusted
// for it before: after a *KeyChangedError, once the person has made sure the business
// really changed its key. Messages signed by the keys trusted before no longer open.
func (d *Device) TrustKey(businessID string, key ed25519.PublicKey) error {
	if len(key) != ed25519.PublicKeySize {
		return errors.New("client: trust key: not an Ed25519 public key")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pins[businessID] = append(ed25519.PublicKey(nil), key...)
	delete(d.earlier, businessID)
	return nil
}

// PinnedKey is the signing key the device trusts for the business, or nil before the
// device has accepted any message from it. After the business rotated its key, it is
// the new key; the device trusts the keys before it for RetiredKeyRetention more.
func (d *Device) PinnedKey(businessID string) ed25519.PublicKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append(ed25519.PublicKey(nil), d.pins[businessID]...)
}

// trusted is the key with id keyID that the device trusts for the business (pinned, or
// pinned before a rotation and still kept), or nil. The caller holds mu.
func (d *Device) trusted(businessID, keyID string) ed25519.PublicKey {
	if k := d.pins[businessID]; k != nil && e2e.KeyID(k) == keyID {
		return k
	}
	for _, p := range d.earlier[businessID] {
		if e2e.KeyID(p.key) == keyID && d.now().Before(p.until) {
			return p.key
		}
	}
	return nil
}

// endorsed reports whether chain (a delivery's business_key_chain) vouches for key as
// a signing key of the business: its first link is key, and each link's endorsement
// verifies under the key of the next, until one is endorsed by a key the device
// trusts. A first key, an operator's replacement, a link that does not verify, or a
// chain longer than the gateway sends ends the walk unvouched. The caller holds mu.
func (d *Device) endorsed(businessID string, key ed25519.PublicKey, chain []*heraldv1.SigningKeyLink) bool {
	if len(chain) == 0 || !bytes.Equal(chain[0].GetPublicKey(), key) {
		return false
	}
	for i, l := range chain[:min(len(chain), maxChainLinks)] {
		if l.GetReplaced() || len(l.GetEndorsement()) == 0 {
			return false
		}
		by := d.trusted(businessID, l.GetEndorsedByKeyId())
		known := by != nil
		if !known && i+1 < len(chain) {
			by = chain[i+1].GetPublicKey()
		}
		if by == nil || e2e.KeyID(by) != l.GetEndorsedByKeyId() ||
			e2e.VerifyEndorsement(by, businessID, l.GetPublicKey(), l.GetEndorsement()) != nil {
			return false
		}
		if known {
			return true
		}
	}
	return false
}

// maxChainLinks is the longest chain the gateway sends (business.MaxChainLinks); the
// device follows no longer one.
const maxChainLinks = 16

// rotate pins key for the business after a rotation the device followed, and keeps
// the key pinned before trusted for RetiredKeyRetention. The caller holds mu.
func (d *Device) rotate(businessID string, key ed25519.PublicKey) {
	if old := d.pins[businessID]; old != nil {
		e := append([]earlierPin{{key: old, until: d.now().Add(RetiredKeyRetention)}}, d.earlier[businessID]...)
		d.earlier[businessID] = e[:min(len(e), maxEarlierPins)]
	}
	d.pins[businessID] = append(ed25519.PublicKey(nil), key...)
}
