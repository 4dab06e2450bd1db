package e2e

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/mlkem"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strconv"
)

// Algorithm names the HPKE suite a device key belongs to. Its values are those of the
// herald.v1.KeyAlgorithm enum, so e2e.Algorithm(d.GetKeyAlgorithm()) converts. Both
// suites use HKDF-SHA256 and ChaCha20-Poly1305; they differ in the KEM.
type Algorithm uint8

const (
	// MLKEM768X25519 is HPKE with the ML-KEM-768 + X25519 hybrid KEM (X-Wing): secure if
	// either ML-KEM-768 or X25519 is, so safe against a future quantum computer. Public
	// keys are 1216 bytes, wraps 1251 bytes plus the device id. New devices use it.
	MLKEM768X25519 Algorithm = 1
	// X25519 is HPKE with DHKEM(X25519, HKDF-SHA256): 32-byte public keys and 163-byte
	// wraps plus the device id, but not post-quantum.
	X25519 Algorithm = 2
)

// The HPKE components shared by both suites.
var (
	hpkeKDF  = hpke.HKDFSHA256()
	hpkeAEAD = hpke.ChaCha20Poly1305()
)

// String returns the algorithm's name, or its number when unknown.
func (a Algorithm) String() string {
	switch a {
	case MLKEM768X25519:
		return "mlkem768x25519"
	case X25519:
		return "x25519"
	}
	return strconv.Itoa(int(a))
}

// PublicKeySize is the length of a public key of the algorithm, or 0 when the algorithm
// is unknown. A gateway that stores keys without using them can check this much.
func (a Algorithm) PublicKeySize() int {
	switch a {
	case MLKEM768X25519:
		return 1216
	case X25519:
		return 32
	}
	return 0
}

// encSize is the length of the HPKE encapsulated key at the start of a wrap.
func (a Algorithm) encSize() int {
	switch a {
	case MLKEM768X25519:
		return 1120
	case X25519:
		return 32
	}
	return 0
}

// privateKeySize is the length of the serialised private key: X-Wing's seed, or the
// X25519 scalar.
const privateKeySize = 32

// kem returns the algorithm's HPKE KEM.
func (a Algorithm) kem() (hpke.KEM, error) {
	switch a {
	case MLKEM768X25519:
		return hpke.MLKEM768X25519(), nil
	case X25519:
		return hpke.DHKEM(ecdh.X25519()), nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnsupportedAlgorithm, uint8(a))
}

// KeyID returns the stable short name of a device public key: the first 16 bytes of its
// SHA-256, in lowercase unpadded base32 (26 characters). Wraps carry these 16 bytes, so
// a device holding several keys knows which one a message was sealed to.
func KeyID(pub []byte) string { return keyIDOf(pub).String() }

// keyID is the binary form of KeyID.
type keyID [16]byte

func keyIDOf(pub []byte) keyID {
	sum := sha256.Sum256(pub)
	return keyID(sum[:16])
}

var keyIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func (id keyID) String() string { return keyIDEncoding.EncodeToString(id[:]) }

// DeviceKey is a device's HPKE key pair. The device generates it, keeps the private
// half (MarshalPrivate) and registers PublicKey and Algorithm with Herald. It is safe
// for concurrent use.
type DeviceKey struct {
	alg  Algorithm
	priv hpke.PrivateKey
	pub  []byte
	id   keyID
}

// GenerateDeviceKey returns a new random key pair for alg.
func GenerateDeviceKey(alg Algorithm) (*DeviceKey, error) {
	kem, err := alg.kem()
	if err != nil {
		return nil, err
	}
	priv, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("e2e: generate %v key: %w", alg, err)
	}
	return newDeviceKey(alg, priv), nil
}

func newDeviceKey(alg Algorithm, priv hpke.PrivateKey) *DeviceKey {
	pub := priv.PublicKey().Bytes()
	return &DeviceKey{alg: alg, priv: priv, pub: pub, id: keyIDOf(pub)}
}

// ParseDeviceKey reads a private key written by MarshalPrivate.
func ParseDeviceKey(b []byte) (*DeviceKey, error) {
	if len(b) < 2 {
		return nil, malformed("device key is %d bytes", len(b))
	}
	if b[0] != Version {
		return nil, fmt.Errorf("%w: device key version %d", ErrUnsupportedVersion, b[0])
	}
	alg := Algorithm(b[1])
	kem, err := alg.kem()
	if err != nil {
		return nil, err
	}
	if len(b) != 2+privateKeySize {
		return nil, malformed("%v device key is %d bytes, want %d", alg, len(b), 2+privateKeySize)
	}
	priv, err := kem.NewPrivateKey(b[2:])
	if err != nil {
		return nil, malformed("%v device key: %v", alg, err)
	}
	return newDeviceKey(alg, priv), nil
}

// MarshalPrivate returns the private key for the device to store, in its secure storage:
// the format version, the algorithm id, and the 32-byte private key as RFC 9180's
// SerializePrivateKey writes it (X-Wing's seed, or the X25519 scalar). Anyone holding
// these bytes can read the device's messages.
func (k *DeviceKey) MarshalPrivate() ([]byte, error) {
	priv, err := k.priv.Bytes()
	if err != nil {
		return nil, fmt.Errorf("e2e: marshal %v key: %w", k.alg, err)
	}
	return append([]byte{Version, byte(k.alg)}, priv...), nil
}

// PublicKey returns the public key to register with Herald, as RFC 9180's
// SerializePublicKey writes it (Algorithm.PublicKeySize bytes).
func (k *DeviceKey) PublicKey() []byte { return append([]byte(nil), k.pub...) }

// Algorithm returns the key's algorithm, to register next to PublicKey.
func (k *DeviceKey) Algorithm() Algorithm { return k.alg }

// KeyID returns KeyID(k.PublicKey()).
func (k *DeviceKey) KeyID() string { return k.id.String() }

// SigningKey is a business's Ed25519 signing key. Seal signs every envelope with it;
// devices verify against PublicKey, which the business publishes. It is safe for
// concurrent use.
type SigningKey struct {
	priv ed25519.PrivateKey
}

// GenerateSigningKey returns a new random signing key.
func GenerateSigningKey() (*SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("e2e: generate signing key: %w", err)
	}
	return &SigningKey{priv: priv}, nil
}

// ParseSigningKey reads a key written by MarshalPrivate: the 32-byte RFC 8032 seed.
func ParseSigningKey(seed []byte) (*SigningKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, malformed("signing key is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	return &SigningKey{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// MarshalPrivate returns the key's 32-byte RFC 8032 seed, for the business to store.
func (k *SigningKey) MarshalPrivate() []byte { return k.priv.Seed() }

// PublicKey returns the key devices verify envelopes against.
func (k *SigningKey) PublicKey() ed25519.PublicKey {
	return append(ed25519.PublicKey(nil), k.priv.Public().(ed25519.PublicKey)...)
}

// CheckPublicKey reports whether pub is a public key a sender can seal to under alg:
// the right length, an ML-KEM-768 encapsulation key that FIPS 203's input check
// accepts and whose key vector is not all zeros (sealing to one would give the
// shared secret away), and an X25519 point that is not of low order (the Diffie-Hellman
// result with it is all zeros whatever the sender's key). A gateway checks keys this
// way at registration, so that a junk key cannot make every send to a number fail.
// The error wraps ErrMalformed, or ErrUnsupportedAlgorithm.
func CheckPublicKey(alg Algorithm, pub []byte) error {
	kem, err := alg.kem()
	if err != nil {
		return err
	}
	if len(pub) != alg.PublicKeySize() {
		return fmt.Errorf("%w: %s public key of %d bytes, want %d", ErrMalformed, alg, len(pub), alg.PublicKeySize())
	}
	point := pub
	if alg == MLKEM768X25519 {
		ek := pub[:mlkem.EncapsulationKeySize768]
		if _, err := mlkem.NewEncapsulationKey768(ek); err != nil {
			return fmt.Errorf("%w: ML-KEM-768 key: %v", ErrMalformed, err)
		}
		// The encapsulation key is the encoded vector t then the 32-byte seed rho.
		if allZero(ek[:len(ek)-32]) {
			return fmt.Errorf("%w: ML-KEM-768 key vector is all zeros", ErrMalformed)
		}
		point = pub[mlkem.EncapsulationKeySize768:]
	}
	x, err := ecdh.X25519().NewPublicKey(point)
	if err != nil {
		return fmt.Errorf("%w: X25519 key: %v", ErrMalformed, err)
	}
	if _, err := lowOrderProbe.ECDH(x); err != nil {
		return fmt.Errorf("%w: X25519 key is a point of low order", ErrMalformed)
	}
	if _, err := kem.NewPublicKey(pub); err != nil {
		return fmt.Errorf("%w: %s key: %v", ErrMalformed, alg, err)
	}
	return nil
}

// lowOrderProbe is a fixed X25519 private key. Its scalar, like every X25519 scalar,
// is a multiple of the cofactor, so its Diffie-Hellman result with a point of low
// order is all zeros, which ECDH refuses; with any other point it is not.
var lowOrderProbe = func() *ecdh.PrivateKey {
	seed := sha256.Sum256([]byte("herald low-order probe"))
	k, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		panic(err)
	}
	return k
}()

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
