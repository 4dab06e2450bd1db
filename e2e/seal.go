package e2e

import (
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Recipient is one device to seal a message for, as LookupRecipient returns it.
type Recipient struct {
	// DeviceID is the device's id, 1 to 255 bytes.
	DeviceID string
	// PublicKey is the device's registered public key.
	PublicKey []byte
	// Algorithm is the scheme PublicKey belongs to.
	Algorithm Algorithm
}

// Sealed is one message sealed for a set of devices, in the two parts a store keeps
// apart: the body once, and one small wrap per device. JoinEnvelope(Body, Wraps[id]),
// or Envelope(id), is what device id receives and opens.
type Sealed struct {
	// Body is the body record: the header and the encrypted body, the same bytes for
	// every device.
	Body []byte
	// Wraps holds one wrap record per device id: the body's content key sealed to the
	// device's key, and the business's signature over the body and that wrap.
	Wraps map[string][]byte
}

// Envelope returns the envelope for deviceID, and false if the message was not sealed
// for it.
func (s *Sealed) Envelope(deviceID string) ([]byte, bool) {
	w, ok := s.Wraps[deviceID]
	if !ok {
		return nil, false
	}
	return JoinEnvelope(s.Body, w), true
}

// Seal encrypts plaintext once under a fresh content key, seals that key to each device
// with HPKE, binds h and each device id into the encryption, and signs each device's
// envelope with sender. It fails without output if any device cannot be sealed for: a
// message goes to all of a recipient's devices or to none.
func Seal(sender *SigningKey, h Header, plaintext []byte, devices []Recipient) (*Sealed, error) {
	if sender == nil {
		return nil, errors.New("e2e: seal: no signing key")
	}
	if err := h.validate(); err != nil {
		return nil, err
	}
	if len(devices) == 0 {
		return nil, errors.New("e2e: seal: no devices")
	}
	if uint64(len(plaintext)) > maxBody-bodyOverhead-commitmentSize-3*maxField {
		return nil, fmt.Errorf("e2e: seal: body of %d bytes is too long", len(plaintext))
	}
	keys := make([]hpke.PublicKey, len(devices))
	seen := make(map[string]bool, len(devices))
	for i, d := range devices {
		if d.DeviceID == "" || len(d.DeviceID) > maxField {
			return nil, fmt.Errorf("e2e: seal: device id must be 1 to 255 bytes, is %d", len(d.DeviceID))
		}
		if seen[d.DeviceID] {
			return nil, fmt.Errorf("e2e: seal: device %q is listed twice", d.DeviceID)
		}
		seen[d.DeviceID] = true
		kem, err := d.Algorithm.kem()
		if err != nil {
			return nil, fmt.Errorf("e2e: seal: device %q: %w", d.DeviceID, err)
		}
		if keys[i], err = kem.NewPublicKey(d.PublicKey); err != nil {
			return nil, fmt.Errorf("e2e: seal: device %q: %v public key: %w", d.DeviceID, d.Algorithm, err)
		}
	}

	contentKey := make([]byte, contentKeySize)
	rand.Read(contentKey)
	aead, commitment, err := bodyCipher(contentKey)
	if err != nil {
		return nil, fmt.Errorf("e2e: seal: %w", err)
	}
	b := make([]byte, 0, 1+3*maxField+len(commitment)+len(plaintext)+bodyOverhead)
	b = append(b, Version)
	b = appendHeader(b, h)
	ad := b
	b = append(b, commitment...)
	b = aead.Seal(b, nil, plaintext, ad)
	bodyHash := sha256.Sum256(b)

	s := &Sealed{Body: b, Wraps: make(map[string][]byte, len(devices))}
	for i, d := range devices {
		w := make([]byte, 0, wrapSize(d.Algorithm, d.DeviceID))
		w = append(w, Version, byte(d.Algorithm))
		w = appendString(w, d.DeviceID)
		id := keyIDOf(d.PublicKey)
		w = append(w, id[:]...)
		sealed, err := hpke.Seal(keys[i], hpkeKDF, hpkeAEAD, wrapInfo(&bodyHash, d.DeviceID), contentKey)
		if err != nil {
			return nil, fmt.Errorf("e2e: seal: device %q: %w", d.DeviceID, err)
		}
		w = append(w, sealed...)
		w = append(w, ed25519.Sign(sender.priv, signedMessage(&bodyHash, w))...)
		s.Wraps[d.DeviceID] = w
	}
	return s, nil
}
