package e2e

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
)

// Version is the format version this package writes and reads: the first byte of every
// envelope, body record, wrap record and marshalled device key.
const Version = 1

// Domain-separation labels: each use of a hash, key or signature has its own, so no
// value made for one purpose is accepted for another.
const (
	signatureLabel  = "herald-e2e v1 signature"
	wrapInfoLabel   = "herald-e2e v1 wrap"
	bodyKeyLabel    = "herald-e2e v1 body key"
	commitmentLabel = "herald-e2e v1 body commitment"
)

// Sizes of the fixed-length fields of the format.
const (
	contentKeySize = 32
	commitmentSize = 32
	bodyOverhead   = 12 + 16                // AES-GCM random nonce and tag
	sealedKeySize  = contentKeySize + 16    // the content key and its ChaCha20-Poly1305 tag
	signatureSize  = ed25519.SignatureSize  // 64
	envelopeHead   = 1 + 4                  // version, body record length
	maxBody        = math.MaxUint32 - 1<<16 // body records must fit the envelope's length field
)

// bodyCipher derives the body's AEAD and key commitment from the content key. The
// commitment is stored in the body record: since it fixes the content key, and the
// signature fixes the body record, one signed body decrypts to one plaintext on every
// device, whatever key a dishonest sender wraps for each (AES-GCM alone does not
// guarantee this).
func bodyCipher(contentKey []byte) (cipher.AEAD, []byte, error) {
	prk, err := hkdf.Extract(sha256.New, contentKey, nil)
	if err != nil {
		return nil, nil, err
	}
	key, err := hkdf.Expand(sha256.New, prk, bodyKeyLabel, 32)
	if err != nil {
		return nil, nil, err
	}
	commitment, err := hkdf.Expand(sha256.New, prk, commitmentLabel, commitmentSize)
	if err != nil {
		return nil, nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil, err
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, nil, err
	}
	return aead, commitment, nil
}

// wrapInfo is the HPKE info of the wrap for deviceID: it binds the wrap to the body
// record (and so to the header inside it) and to the device id.
func wrapInfo(bodyHash *[32]byte, deviceID string) []byte {
	b := make([]byte, 0, len(wrapInfoLabel)+1+len(bodyHash)+1+len(deviceID))
	b = append(b, wrapInfoLabel...)
	b = append(b, 0)
	b = append(b, bodyHash[:]...)
	return appendString(b, deviceID)
}

// signedMessage is what the business signs for one device: the body record and that
// device's wrap record up to its signature, each by its SHA-256.
func signedMessage(bodyHash *[32]byte, unsignedWrap []byte) []byte {
	wrapHash := sha256.Sum256(unsignedWrap)
	b := make([]byte, 0, len(signatureLabel)+1+2*sha256.Size)
	b = append(b, signatureLabel...)
	b = append(b, 0)
	b = append(b, bodyHash[:]...)
	return append(b, wrapHash[:]...)
}

// appendString appends s with its one-byte length. Callers have checked len(s) <= 255.
func appendString(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

// reader reads fields from the front of b. Reading past the end sets short and returns
// zeros, so a parser reads all its fields and checks short once.
type reader struct {
	b     []byte
	short bool
}

func (r *reader) bytes(n int) []byte {
	if r.short || n > len(r.b) {
		r.short = true
		return make([]byte, n)
	}
	b := r.b[:n:n]
	r.b = r.b[n:]
	return b
}

func (r *reader) byte() byte { return r.bytes(1)[0] }

func (r *reader) string() string { return string(r.bytes(int(r.byte()))) }

// body is a parsed body record.
type body struct {
	header     Header
	ad         []byte // the record up to the end of the header: the body's associated data
	commitment []byte
	ciphertext []byte // AES-GCM nonce, ciphertext and tag
}

func parseBody(b []byte) (body, error) {
	if len(b) == 0 {
		return body{}, malformed("body record is empty")
	}
	if b[0] != Version {
		return body{}, fmt.Errorf("%w: body record version %d", ErrUnsupportedVersion, b[0])
	}
	r := reader{b: b[1:]}
	h, err := readHeader(&r)
	if err != nil {
		return body{}, err
	}
	ad := b[: len(b)-len(r.b) : len(b)-len(r.b)]
	commitment := r.bytes(commitmentSize)
	if r.short || len(r.b) < bodyOverhead {
		return body{}, malformed("body record is truncated")
	}
	return body{header: h, ad: ad, commitment: commitment, ciphertext: r.b}, nil
}

// wrap is a parsed wrap record.
type wrap struct {
	alg      Algorithm
	deviceID string
	keyID    keyID
	sealed   []byte // HPKE encapsulated key and the sealed content key
	unsigned []byte // the record up to its signature
	sig      []byte
}

func wrapSize(alg Algorithm, deviceID string) int {
	return 3 + len(deviceID) + len(keyID{}) + alg.encSize() + sealedKeySize + signatureSize
}

func parseWrap(b []byte) (wrap, error) {
	if len(b) == 0 {
		return wrap{}, malformed("wrap record is empty")
	}
	if b[0] != Version {
		return wrap{}, fmt.Errorf("%w: wrap record version %d", ErrUnsupportedVersion, b[0])
	}
	if len(b) < 2 {
		return wrap{}, malformed("wrap record is truncated")
	}
	w := wrap{alg: Algorithm(b[1])}
	if _, err := w.alg.kem(); err != nil {
		return wrap{}, err
	}
	r := reader{b: b[2:]}
	w.deviceID = r.string()
	w.keyID = keyID(r.bytes(len(keyID{})))
	w.sealed = r.bytes(w.alg.encSize() + sealedKeySize)
	w.sig = r.bytes(signatureSize)
	if r.short || len(r.b) != 0 || w.deviceID == "" {
		return wrap{}, malformed("%v wrap record is %d bytes, want %d", w.alg, len(b), wrapSize(w.alg, w.deviceID))
	}
	w.unsigned = b[: len(b)-signatureSize : len(b)-signatureSize]
	return w, nil
}

// JoinEnvelope returns the envelope one device receives: its wrap record and the body
// record shared by all devices, as Sealed holds them. A store that keeps the body once
// and the wraps apart joins them at delivery. body must come from Seal.
func JoinEnvelope(body, wrap []byte) []byte {
	if uint64(len(body)) > math.MaxUint32 {
		panic("e2e: body record too long for an envelope")
	}
	b := make([]byte, 0, envelopeHead+len(body)+len(wrap))
	b = append(b, Version)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	b = append(b, body...)
	return append(b, wrap...)
}

// SplitEnvelope returns the body record and the wrap record of an envelope, sharing its
// memory. It checks only the framing; Open checks the rest. A gateway receiving one
// envelope per device can split them to store a body that all of them share once.
func SplitEnvelope(envelope []byte) (body, wrap []byte, err error) {
	if len(envelope) == 0 {
		return nil, nil, malformed("envelope is empty")
	}
	if envelope[0] != Version {
		return nil, nil, fmt.Errorf("%w: envelope version %d", ErrUnsupportedVersion, envelope[0])
	}
	if len(envelope) < envelopeHead {
		return nil, nil, malformed("envelope is truncated")
	}
	n := uint64(binary.BigEndian.Uint32(envelope[1:envelopeHead]))
	if n > uint64(len(envelope)-envelopeHead) {
		return nil, nil, malformed("envelope body length %d exceeds its %d bytes", n, len(envelope))
	}
	end := envelopeHead + int(n)
	return envelope[envelopeHead:end:end], envelope[end:], nil
}
