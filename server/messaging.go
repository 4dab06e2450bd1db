package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/admission"
	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/business"
	"github.com/heraldhq/herald/delivery"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/keylog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func (s *Server) uid(e164 string) string { return keys.UID(s.cfg.Secret, e164) }

// toAdmission is a validated message as package admission takes it.
func (s *Server) toAdmission(m message) admission.Message {
	return admission.Message{UID: s.uid(m.e164), Category: m.category, Kind: m.kind, ClientMessageID: m.clientID,
		TTL: m.ttl, Envelopes: m.envelopes, Body: m.body, SigningKeyID: m.signingKeyID}
}

// Send admits one message. Over the business's rate it fails with
// RESOURCE_EXHAUSTED and a RetryInfo saying when a retry will pass.
func (s *Server) Send(ctx context.Context, req *heraldv1.SendRequest) (*heraldv1.SendResponse, error) {
	c := &checker{prefix: "message."}
	m := c.message(req.GetMessage())
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	ds, err := s.admission.Admit(ctx, businessFrom(ctx), []admission.Message{s.toAdmission(m)})
	if err != nil {
		return nil, s.sendError(ctx, err)
	}
	if ds[0].Outcome == blocklist.RateLimited {
		return nil, exhausted("over the business's rate limit; retry after the RetryInfo delay", ds[0].RetryAfter)
	}
	return &heraldv1.SendResponse{Result: result(ds[0])}, nil
}

// SendBatch admits up to 1000 messages in one pipelined round trip. Over the
// business's rate, it admits what the limit allows, in order, and gives the rest
// OUTCOME_RATE_LIMITED with retry_after.
func (s *Server) SendBatch(ctx context.Context, req *heraldv1.SendBatchRequest) (*heraldv1.SendBatchResponse, error) {
	msgs := req.GetMessages()
	noteMessages(ctx, len(msgs))
	switch {
	case len(msgs) == 0:
		return nil, invalid([]*violation{badField("messages", "required: 1 to 1000 messages")})
	case len(msgs) > maxBatch:
		return nil, invalid([]*violation{badField("messages", fmt.Sprintf("at most %d messages, got %d", maxBatch, len(msgs)))})
	}
	results := make([]*heraldv1.Result, len(msgs))
	var valid []admission.Message
	var at []int
	for i, pm := range msgs {
		c := &checker{prefix: fmt.Sprintf("messages[%d].", i)}
		m := c.message(pm)
		if len(c.vs) > 0 {
			r := &heraldv1.Result{Outcome: heraldv1.Outcome_OUTCOME_INVALID}
			for _, v := range c.vs {
				r.Violations = append(r.Violations, &heraldv1.FieldViolation{Field: v.Field, Description: v.Description})
			}
			results[i] = r
			continue
		}
		valid = append(valid, s.toAdmission(m))
		at = append(at, i)
	}
	ds, err := s.admission.Admit(ctx, businessFrom(ctx), valid)
	if err != nil {
		return nil, s.sendError(ctx, err)
	}
	for j, d := range ds {
		results[at[j]] = result(d)
	}
	return &heraldv1.SendBatchResponse{Results: results}, nil
}

// admitted kicks the forwarder for the ACCEPTED event an admission queued, and
// indexes the message by expiry; for a duplicate it does both again, which changes
// nothing unless the call that admitted it failed before it could.
func (s *Server) admitted(a blocklist.Admission) {
	s.delivery.Forwarder().Kick(a.UID)
	devices := make([]string, len(a.Envelopes))
	for i, e := range a.Envelopes {
		devices[i] = e.DeviceID
	}
	s.delivery.Waker().Admitted(a.UID, devices)
	if !a.Expires.IsZero() { // zero: a duplicate whose message is gone
		s.delivery.Expiries().Track(a.MessageID, a.Expires)
	}
}

var outcomes = map[blocklist.Outcome]heraldv1.Outcome{
	blocklist.Accepted:            heraldv1.Outcome_OUTCOME_ACCEPTED,
	blocklist.Blocked:             heraldv1.Outcome_OUTCOME_BLOCKED,
	blocklist.NotOptedIn:          heraldv1.Outcome_OUTCOME_NOT_OPTED_IN,
	blocklist.OptedOut:            heraldv1.Outcome_OUTCOME_OPTED_OUT,
	blocklist.UnknownRecipient:    heraldv1.Outcome_OUTCOME_UNKNOWN_RECIPIENT,
	blocklist.StaleDevices:        heraldv1.Outcome_OUTCOME_STALE_DEVICES,
	blocklist.RecipientCapped:     heraldv1.Outcome_OUTCOME_RECIPIENT_CAPPED,
	blocklist.NewRecipientLimited: heraldv1.Outcome_OUTCOME_NEW_RECIPIENT_LIMITED,
	blocklist.RateLimited:         heraldv1.Outcome_OUTCOME_RATE_LIMITED,
	blocklist.QuotaExceeded:       heraldv1.Outcome_OUTCOME_QUOTA_EXCEEDED,
}

// result is a decision as the API reports it; refusals that a wait lifts carry it.
func result(d blocklist.Decision) *heraldv1.Result {
	r := &heraldv1.Result{Outcome: outcomes[d.Outcome], MessageId: d.MessageID, Duplicate: d.Duplicate,
		MissingDeviceIds: d.Missing, UnknownDeviceIds: d.Unknown, RetiredKeyDeviceIds: d.Retired}
	switch d.Outcome {
	case blocklist.RecipientCapped, blocklist.NewRecipientLimited, blocklist.RateLimited:
		r.RetryAfter = durationpb.New(d.RetryAfter)
	}
	return r
}

// LookupRecipient returns the devices to encrypt to, or the outcome that would
// reject a message; a business that would be rejected learns no keys.
func (s *Server) LookupRecipient(ctx context.Context, req *heraldv1.LookupRecipientRequest) (*heraldv1.LookupRecipientResponse, error) {
	c := &checker{}
	e164 := c.phone("recipient", req.GetRecipient())
	cat := c.category("category", req.GetCategory())
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	chk, err := s.admission.Lookup(ctx, businessFrom(ctx), s.uid(e164), cat)
	if err != nil {
		return nil, s.storeError(ctx, "lookup recipient", err)
	}
	if chk.Outcome == blocklist.RateLimited {
		return nil, exhausted("over the business's rate of lookups and consent records; retry after the RetryInfo "+
			"delay", chk.RetryAfter)
	}
	resp := &heraldv1.LookupRecipientResponse{Outcome: outcomes[chk.Outcome]}
	if chk.Outcome != blocklist.Accepted {
		return resp, nil
	}
	devs, err := delivery.ParseDevices(chk.Devices)
	if err != nil {
		return nil, s.storeError(ctx, "lookup recipient", err)
	}
	var proofs map[string]*heraldv1.KeyProof
	if s.keyLog != nil {
		if resp.KeyLogCheckpoint, proofs, err = s.deviceProofs(ctx, s.uid(e164), devs); err != nil {
			return nil, s.storeError(ctx, "lookup recipient", err)
		}
	}
	for _, d := range devs {
		resp.Devices = append(resp.Devices, &heraldv1.Device{DeviceId: d.ID, PublicKey: d.PublicKey,
			KeyAlgorithm: heraldv1.KeyAlgorithm(d.Algorithm), KeyId: d.KeyID, KeyProof: proofs[d.ID]})
	}
	return resp, nil
}

// RecordConsent stores a consent the business collected.
func (s *Server) RecordConsent(ctx context.Context, req *heraldv1.RecordConsentRequest) (*heraldv1.RecordConsentResponse, error) {
	c := &checker{}
	e164 := c.phone("recipient", req.GetRecipient())
	cat := c.category("category", req.GetCategory())
	v := c.consent("consent", req.GetConsent())
	now := s.now()
	ev := req.GetEvidence()
	var evidence blocklist.Evidence
	if ev == nil {
		c.bad("evidence", "required: source and collected_time of the consent")
	} else {
		c.text("evidence.source", ev.GetSource(), 1, maxSourceLen)
		if len(ev.GetReference()) > 0 {
			c.text("evidence.reference", ev.GetReference(), 0, maxReferenceLen)
		}
		switch t := ev.GetCollectedTime(); {
		case t == nil:
			c.bad("evidence.collected_time", "required")
		case t.CheckValid() != nil:
			c.bad("evidence.collected_time", "not a valid time")
		case t.AsTime().After(now.Add(consentClockSkew)):
			c.bad("evidence.collected_time", "is in the future")
		default:
			evidence = blocklist.Evidence{Source: ev.GetSource(), Reference: ev.GetReference(), Collected: t.AsTime()}
		}
	}
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	r, err := s.admission.RecordConsent(ctx, businessFrom(ctx), s.uid(e164), cat, v, evidence)
	if err != nil {
		return nil, s.storeError(ctx, "record consent", err)
	}
	switch r.Outcome {
	case blocklist.RateLimited:
		return nil, exhausted("over the business's rate of lookups and consent records; retry after the RetryInfo "+
			"delay", r.RetryAfter)
	case blocklist.NewRecipientLimited:
		return nil, exhaustedFor("a person the business has not reached in the window, beyond its daily unique "+
			"recipient tier: nothing was recorded; retry after the RetryInfo delay", r.RetryAfter, "NEW_RECIPIENT_LIMITED")
	}
	return &heraldv1.RecordConsentResponse{EffectiveConsent: consentProto(r.Effective), OverriddenByRecipient: r.Overridden}, nil
}

func consentProto(c blocklist.Consent) heraldv1.Consent {
	switch c {
	case blocklist.ConsentIn:
		return heraldv1.Consent_CONSENT_OPTED_IN
	case blocklist.ConsentOut:
		return heraldv1.Consent_CONSENT_OPTED_OUT
	}
	return heraldv1.Consent_CONSENT_UNSPECIFIED
}

// rejectReasonProto is rejectReasons the other way.
var rejectReasonProto = map[string]heraldv1.RejectReason{}

func init() {
	for k, v := range rejectReasons {
		rejectReasonProto[v] = k
	}
}

var statusProto = map[string]heraldv1.Status{
	delivery.StatusAccepted:  heraldv1.Status_STATUS_ACCEPTED,
	delivery.StatusDelivered: heraldv1.Status_STATUS_DELIVERED,
	delivery.StatusRead:      heraldv1.Status_STATUS_READ,
	delivery.StatusExpired:   heraldv1.Status_STATUS_EXPIRED,
	delivery.StatusFailed:    heraldv1.Status_STATUS_FAILED,
}

// StreamStatus streams the business's status events from a cursor. A cursor names
// the business it belongs to: another business's cursor is PERMISSION_DENIED.
func (s *Server) StreamStatus(req *heraldv1.StreamStatusRequest, stream grpc.ServerStreamingServer[heraldv1.StatusEvent]) error {
	business := businessFrom(stream.Context())
	after := ""
	if cur := req.GetCursor(); cur != "" {
		owner, pos, ok := strings.Cut(cur, ".")
		if !ok || !validStreamID(pos) {
			return invalid([]*violation{badField("cursor", "not a cursor from a StatusEvent")})
		}
		if owner != business {
			return permissionDenied("the cursor belongs to another business's status stream")
		}
		after = pos
	}
	ctx, cancel := s.streamContext(stream.Context())
	defer cancel()
	revoked := s.watchKey(ctx, cancel)
	err := s.delivery.Statuses().Stream(ctx, business, after, func(e delivery.Event) error {
		return stream.Send(&heraldv1.StatusEvent{Cursor: business + "." + e.Cursor, MessageId: e.MessageID,
			ClientMessageId: e.ClientMessageID, Status: statusProto[e.Status], DeviceId: e.DeviceID,
			FailureReason: rejectReasonProto[e.Reason],
			Time:          timestamppb.New(e.Time)})
	})
	if revoked.Load() {
		return unauthenticated("the API key was revoked")
	}
	if err != nil && stream.Context().Err() == nil {
		return s.storeError(ctx, "stream status", err)
	}
	return nil
}

// keyRecheck is how often an open StreamStatus stream checks its API key in Redis: a
// revoked key's stream ends within it (plus a round trip), inside the 4 seconds within
// which a revoked key stops working everywhere.
const keyRecheck = 2 * time.Second

// watchKey checks the API key of the stream whose context is ctx every keyRecheck,
// until ctx ends, and calls end once the key is revoked, which it then reports. A
// check that fails (Redis unreachable) changes nothing: the stream meets the same
// Redis itself.
func (s *Server) watchKey(ctx context.Context, end context.CancelFunc) *atomic.Bool {
	revoked := &atomic.Bool{}
	tok, _ := bearer(ctx)
	go func() {
		t := time.NewTicker(keyRecheck)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if errors.Is(s.businesses.CheckKey(ctx, tok), business.ErrBadKey) {
				revoked.Store(true)
				end()
				return
			}
		}
	}()
	return revoked
}

// validStreamID checks a Redis stream id: "<ms>-<seq>", each a 64-bit unsigned number.
func validStreamID(v string) bool {
	a, b, ok := strings.Cut(v, "-")
	return ok && isUint64(a) && isUint64(b)
}

// isUint64 reports whether v is a decimal number that fits 64 bits unsigned.
func isUint64(v string) bool {
	_, err := strconv.ParseUint(v, 10, 64) // no sign, no empty string
	return err == nil
}

// SetSigningKey registers the business's Ed25519 public key, which deliveries carry:
// its first, or a rotation that one of its keys in use endorsed.
func (s *Server) SetSigningKey(ctx context.Context, req *heraldv1.SetSigningKeyRequest) (*heraldv1.SetSigningKeyResponse, error) {
	c := &checker{}
	c.signingKey("public_key", req.GetPublicKey())
	e := c.endorsement(req.GetEndorsement(), req.GetEndorsedByKeyId())
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	err := s.businesses.SetSigningKey(ctx, businessFrom(ctx), req.GetPublicKey(), e)
	switch {
	case errors.Is(err, business.ErrSigningKeyExists):
		return nil, withInfo(codes.FailedPrecondition, "the business has another signing key: sign with that one (load its "+
			"private key where you send from), or rotate to a new key with an endorsement by it (endorsement, "+
			"endorsed_by_key_id); a business that lost its keys asks the operator to replace them, which every "+
			"device sees as a key change", "SIGNING_KEY_EXISTS")
	case errors.Is(err, business.ErrEndorserNotInUse):
		return nil, invalid([]*violation{badField("endorsed_by_key_id", "not a signing key the business has in use "+
			"(registered, not retired, not set aside by an operator's replacement)")})
	case errors.Is(err, business.ErrBadEndorsement):
		return nil, invalid([]*violation{badField("endorsement", "not key "+req.GetEndorsedByKeyId()+"'s endorsement of "+
			"public_key for this business (e2e.EndorseSigningKey)")})
	case errors.Is(err, business.ErrTooManySigningKeys):
		return nil, withInfo(codes.FailedPrecondition, fmt.Sprintf("the business has %d signing keys in use, the most "+
			"allowed: retire one it no longer signs with (RetireSigningKey)", business.MaxSigningKeys), "TOO_MANY_SIGNING_KEYS")
	case err != nil:
		return nil, s.signingKeyError(ctx, "set signing key", err)
	}
	kind := keylog.BusinessKeyAdded
	if e != nil {
		kind = keylog.BusinessKeyRotated
	}
	s.noteBusinessKey(ctx, kind, businessFrom(ctx), req.GetPublicKey())
	return &heraldv1.SetSigningKeyResponse{KeyId: e2e.KeyID(req.GetPublicKey())}, nil
}

// signingKeyError is the status of an error that setting or replacing a signing key
// share.
func (s *Server) signingKeyError(ctx context.Context, op string, err error) error {
	if errors.Is(err, business.ErrSigningKeyReused) {
		return withInfo(codes.FailedPrecondition, "the business had that signing key before; a new key must be new",
			"SIGNING_KEY_REUSED")
	}
	return s.storeError(ctx, op, err)
}

// RetireSigningKey retires one of the business's signing keys other than its current one.
func (s *Server) RetireSigningKey(ctx context.Context, req *heraldv1.RetireSigningKeyRequest) (*heraldv1.RetireSigningKeyResponse, error) {
	if !validKeyID(req.GetKeyId()) {
		return nil, invalid([]*violation{badField("key_id", "required: a key id from SetSigningKey")})
	}
	// The key log names the key that is retired: read it first.
	var retired []byte
	if s.keyLog != nil {
		if prof, err := s.businesses.ProfileFor(ctx, businessFrom(ctx), req.GetKeyId(), s.now()); err == nil {
			if chain := prof.SigningKeyChain(req.GetKeyId()); len(chain) > 0 && e2e.KeyID(chain[0].PublicKey) == req.GetKeyId() {
				retired = chain[0].PublicKey
			}
		}
	}
	switch err := s.businesses.RetireSigningKey(ctx, businessFrom(ctx), req.GetKeyId()); {
	case errors.Is(err, business.ErrNoSuchSigningKey):
		return nil, notFound("the business has no signing key " + req.GetKeyId() + " in use")
	case errors.Is(err, business.ErrCurrentSigningKey):
		return nil, withInfo(codes.FailedPrecondition, "that is the business's current signing key: rotate to a new one first",
			"CURRENT_SIGNING_KEY")
	case err != nil:
		return nil, s.storeError(ctx, "retire signing key", err)
	}
	if retired != nil {
		s.noteBusinessKey(ctx, keylog.BusinessKeyRetired, businessFrom(ctx), retired)
	}
	return &heraldv1.RetireSigningKeyResponse{}, nil
}
