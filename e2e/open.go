package e2e

import (
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
)

// Message is an opened envelope.
type Message struct {
	// Header is the routing metadata as the business sealed and signed it. It equals the
	// expected header given to Open, except SentTime when that was zero.
	Header Header
	// Body is the plaintext.
	Body []byte
}

// Open verifies and decrypts the envelope that device deviceID, holding dev, received.
// expect is the routing metadata the delivery claims; business is the public key of
// the business the delivery claims sent it, which the caller must trust for that
// business. Open returns the plaintext only if the business signed this envelope for
// this device and key, and the sealed header equals expect (SentTime is compared, to
// the millisecond, only when expect.SentTime is not zero).
//
// Errors wrap, in the order they are checked: ErrUnsupportedVersion, ErrMalformed or
// ErrUnsupportedAlgorithm for bytes it cannot parse; ErrNotForThisDevice for an
// envelope sealed for another device id or key; ErrBadSignature; ErrHeaderMismatch (a
// *HeaderMismatchError); and ErrMalformed for a signed envelope that does not decrypt.
func Open(dev *DeviceKey, deviceID string, expect Header, business ed25519.PublicKey, envelope []byte) (*Message, error) {
	if dev == nil {
		return nil, fmt.Errorf("%w: no device key", ErrNotForThisDevice)
	}
	bodyRec, wrapRec, err := SplitEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	b, err := parseBody(bodyRec)
	if err != nil {
		return nil, err
	}
	w, err := parseWrap(wrapRec)
	if err != nil {
		return nil, err
	}
	if w.deviceID != deviceID {
		return nil, fmt.Errorf("%w: sealed for device %q, this is %q", ErrNotForThisDevice, w.deviceID, deviceID)
	}
	if w.alg != dev.alg || w.keyID != dev.id {
		return nil, fmt.Errorf("%w: sealed to %v key %v, this is %v key %v", ErrNotForThisDevice, w.alg, w.keyID, dev.alg, dev.id)
	}

	// The signature is checked before the private key touches anything, so the key is
	// only ever used on what the business sent.
	bodyHash := sha256.Sum256(bodyRec)
	if len(business) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: business public key is %d bytes", ErrBadSignature, len(business))
	}
	if !ed25519.Verify(business, signedMessage(&bodyHash, w.unsigned), w.sig) {
		return nil, ErrBadSignature
	}
	if err := b.header.match(expect); err != nil {
		return nil, err
	}

	contentKey, err := hpke.Open(dev.priv, hpkeKDF, hpkeAEAD, wrapInfo(&bodyHash, deviceID), w.sealed)
	if err != nil {
		return nil, malformed("signed wrap does not open: %v", err)
	}
	if len(contentKey) != contentKeySize {
		return nil, malformed("content key is %d bytes", len(contentKey))
	}
	aead, commitment, err := bodyCipher(contentKey)
	if err != nil {
		return nil, malformed("content key: %v", err)
	}
	if subtle.ConstantTimeCompare(commitment, b.commitment) != 1 {
		return nil, malformed("content key does not match the body's commitment")
	}
	plaintext, err := aead.Open(nil, nil, b.ciphertext, b.ad)
	if err != nil {
		return nil, malformed("body does not decrypt: %v", err)
	}
	return &Message{Header: b.header, Body: plaintext}, nil
}

// Inspect reads the header and the device id an envelope claims, with no key. Nothing
// it returns is authenticated: a gateway can use it to refuse an envelope that
// contradicts the request it came with (another category, another device), so that the
// business hears of the mistake at once; only Open proves anything.
func Inspect(envelope []byte) (h Header, deviceID string, err error) {
	bodyRec, wrapRec, err := SplitEnvelope(envelope)
	if err != nil {
		return Header{}, "", err
	}
	b, err := parseBody(bodyRec)
	if err != nil {
		return Header{}, "", err
	}
	w, err := parseWrap(wrapRec)
	if err != nil {
		return Header{}, "", err
	}
	return b.header, w.deviceID, nil
}
