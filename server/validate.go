package server

import (
	"crypto/ed25519"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/business"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/phone"
)

// The field rules documented in the protos. Every request is checked here, in one
// place, before any Redis call; a failure is INVALID_ARGUMENT naming the field (or,
// for a batch entry, an OUTCOME_INVALID result naming it).
const (
	maxBatch         = 1000
	maxEnvelopes     = 16
	maxCiphertext    = 64 << 10
	maxClientIDLen   = 128
	maxTTL           = 30 * 24 * time.Hour
	minTTL           = time.Second
	maxAckIDs        = 1000
	maxDisplayName   = 100
	maxSourceLen     = 64
	maxReferenceLen  = 256
	consentClockSkew = 5 * time.Minute
	maxIDLen         = 64
)

// kinds maps each kind to its category and stored name.
var kinds = map[heraldv1.Kind]struct {
	category heraldv1.Category
	name     string
}{
	heraldv1.Kind_KIND_RECEIPT:         {heraldv1.Category_CATEGORY_TRANSACTIONAL, "receipt"},
	heraldv1.Kind_KIND_RESERVATION:     {heraldv1.Category_CATEGORY_TRANSACTIONAL, "reservation"},
	heraldv1.Kind_KIND_DELIVERY_STATUS: {heraldv1.Category_CATEGORY_TRANSACTIONAL, "delivery_status"},
	heraldv1.Kind_KIND_ACCOUNT_UPDATE:  {heraldv1.Category_CATEGORY_TRANSACTIONAL, "account_update"},
	heraldv1.Kind_KIND_OFFER:           {heraldv1.Category_CATEGORY_MARKETING, "offer"},
}

// message is a validated Message.
type message struct {
	body      []byte
	e164      string
	category  blocklist.Category
	kind      string
	clientID  string
	ttl       time.Duration
	envelopes []blocklist.Envelope
	// signingKeyID is the business key the message is signed with, or "".
	signingKeyID string
}

// checker collects violations under a path prefix.
type checker struct {
	prefix string
	vs     []*violation
}

func (c *checker) bad(field, format string, args ...any) {
	c.vs = append(c.vs, badField(c.prefix+field, fmt.Sprintf(format, args...)))
}

func (c *checker) phone(field, v string) string {
	if v == "" {
		c.bad(field, "required: an E.164 phone number, e.g. +14155550123")
		return ""
	}
	n, err := phone.Parse(v)
	if err != nil {
		c.bad(field, "%v", err)
	}
	return n
}

func (c *checker) category(field string, v heraldv1.Category) blocklist.Category {
	switch v {
	case heraldv1.Category_CATEGORY_TRANSACTIONAL:
		return blocklist.Transactional
	case heraldv1.Category_CATEGORY_MARKETING:
		return blocklist.Marketing
	case heraldv1.Category_CATEGORY_UNSPECIFIED:
		c.bad(field, "required: CATEGORY_TRANSACTIONAL or CATEGORY_MARKETING")
	default:
		c.bad(field, "unknown value %d: want CATEGORY_TRANSACTIONAL or CATEGORY_MARKETING", v)
	}
	return ""
}

func (c *checker) consent(field string, v heraldv1.Consent) blocklist.Consent {
	switch v {
	case heraldv1.Consent_CONSENT_OPTED_IN:
		return blocklist.ConsentIn
	case heraldv1.Consent_CONSENT_OPTED_OUT:
		return blocklist.ConsentOut
	case heraldv1.Consent_CONSENT_UNSPECIFIED:
		c.bad(field, "required: CONSENT_OPTED_IN or CONSENT_OPTED_OUT")
	default:
		c.bad(field, "unknown value %d: want CONSENT_OPTED_IN or CONSENT_OPTED_OUT", v)
	}
	return ""
}

// id checks an id Herald issued (business, device): short, lower-case letters, digits
// and '_'.
func (c *checker) id(field, v string) {
	if v == "" {
		c.bad(field, "required")
		return
	}
	if len(v) > maxIDLen || strings.IndexFunc(v, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
	}) >= 0 {
		c.bad(field, "not an id Herald issued")
	}
}

func (c *checker) text(field, v string, min, max int) {
	n := utf8.RuneCountInString(v)
	switch {
	case !utf8.ValidString(v):
		c.bad(field, "must be UTF-8")
	case n < min && min == 1:
		c.bad(field, "required")
	case n < min || n > max:
		c.bad(field, "must be %d to %d characters, got %d", min, max, n)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		c.bad(field, "must not contain control characters")
	}
}

func validClientID(v string) bool {
	if len(v) == 0 || len(v) > maxClientIDLen {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:-", r)) {
			return false
		}
	}
	return true
}

// signingKey checks a business signing key: an Ed25519 public key.
func (c *checker) signingKey(field string, pub []byte) {
	if len(pub) != ed25519.PublicKeySize {
		c.bad(field, "must be a %d-byte Ed25519 public key, got %d bytes", ed25519.PublicKeySize, len(pub))
	}
}

// endorsement checks SetSigningKeyRequest's endorsement and the id of the key that
// made it, which come together or not at all; nil when they do not come.
func (c *checker) endorsement(sig []byte, by string) *business.Endorsement {
	switch {
	case len(sig) == 0 && by == "":
		return nil
	case len(sig) != ed25519.SignatureSize:
		c.bad("endorsement", "must be a %d-byte Ed25519 signature (e2e.EndorseSigningKey), got %d bytes", ed25519.SignatureSize, len(sig))
	case !validKeyID(by):
		c.bad("endorsed_by_key_id", "required with endorsement: the id of the business's key that made it")
	default:
		return &business.Endorsement{By: by, Signature: sig}
	}
	return nil
}

// validKeyID checks the shape of an e2e key id: 26 lower-case base32 characters.
func validKeyID(v string) bool {
	if len(v) != 26 {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= '2' && r <= '7') {
			return false
		}
	}
	return true
}

// message validates one Message; c.prefix names where it sits in the request.
func (c *checker) message(m *heraldv1.Message) message {
	if m == nil {
		c.vs = append(c.vs, badField(strings.TrimSuffix(c.prefix, "."), "required"))
		return message{}
	}
	var out message
	out.e164 = c.phone("recipient", m.GetRecipient())
	out.category = c.category("category", m.GetCategory())
	switch k, ok := kinds[m.GetKind()]; {
	case m.GetKind() == heraldv1.Kind_KIND_UNSPECIFIED:
		c.bad("kind", "required")
	case !ok:
		c.bad("kind", "unknown value %d", m.GetKind())
	case out.category != "" && k.category != m.GetCategory():
		c.bad("kind", "%s does not belong to %s", m.GetKind(), m.GetCategory())
	default:
		out.kind = k.name
	}
	switch id := m.GetClientMessageId(); {
	case id == "":
		c.bad("client_message_id", "required: an idempotency key of 1 to %d characters of [A-Za-z0-9._:-]", maxClientIDLen)
	case !validClientID(id):
		c.bad("client_message_id", "must be 1 to %d characters of [A-Za-z0-9._:-]", maxClientIDLen)
	default:
		out.clientID = id
	}
	envs := m.GetEnvelopes()
	switch {
	case len(envs) == 0:
		c.bad("envelopes", "required: one envelope per recipient device (see LookupRecipient)")
	case len(envs) > maxEnvelopes:
		c.bad("envelopes", "at most %d envelopes, got %d", maxEnvelopes, len(envs))
	}
	seen := map[string]bool{}
	for i, e := range envs {
		if len(envs) > maxEnvelopes {
			break
		}
		f := fmt.Sprintf("envelopes[%d].", i)
		before := len(c.vs)
		c.id(f+"device_id", e.GetDeviceId())
		if seen[e.GetDeviceId()] {
			c.bad(f+"device_id", "device %q has two envelopes", e.GetDeviceId())
		}
		seen[e.GetDeviceId()] = true
		switch n := len(e.GetCiphertext()); {
		case n == 0:
			c.bad(f+"ciphertext", "required")
		case n > maxCiphertext:
			c.bad(f+"ciphertext", "at most %d bytes (64 KiB), got %d", maxCiphertext, n)
		}
		if k := e.GetKeyId(); k != "" && !validKeyID(k) {
			c.bad(f+"key_id", "not a key id from LookupRecipient")
		}
		if len(c.vs) == before {
			out.envelopes = append(out.envelopes, blocklist.Envelope{DeviceID: e.GetDeviceId(), Ciphertext: e.GetCiphertext(), KeyID: e.GetKeyId()})
		}
	}
	if len(m.GetBody()) > maxCiphertext {
		c.bad("body", "at most %d bytes (64 KiB), got %d", maxCiphertext, len(m.GetBody()))
	} else {
		out.body = m.GetBody()
	}
	if k := m.GetSigningKeyId(); k != "" && !validKeyID(k) {
		c.bad("signing_key_id", "not a key id from SetSigningKey")
	} else {
		out.signingKeyID = k
	}
	out.ttl = maxTTL
	if m.Ttl != nil {
		d := m.GetTtl()
		if err := d.CheckValid(); err != nil || d.AsDuration() < minTTL || d.AsDuration() > maxTTL {
			c.bad("ttl", "must be from 1s to 720h (30 days)")
		} else {
			out.ttl = d.AsDuration()
		}
	}
	return out
}

// publicKey checks a device key and its algorithm: the key must be one a sender can
// seal to (e2e.CheckPublicKey), so that a junk key never makes every send to a number
// fail.
func (c *checker) publicKey(key []byte, alg heraldv1.KeyAlgorithm) {
	switch alg {
	case heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_MLKEM768_X25519, heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_X25519:
	case heraldv1.KeyAlgorithm_KEY_ALGORITHM_UNSPECIFIED:
		c.bad("key_algorithm", "required")
		return
	default:
		c.bad("key_algorithm", "unknown value %d", alg)
		return
	}
	if len(key) == 0 {
		c.bad("public_key", "required")
		return
	}
	if err := e2e.CheckPublicKey(e2e.Algorithm(alg), key); err != nil {
		c.bad("public_key", "not a valid %s key: %s", e2e.Algorithm(alg),
			strings.TrimPrefix(err.Error(), e2e.ErrMalformed.Error()+": "))
	}
}
