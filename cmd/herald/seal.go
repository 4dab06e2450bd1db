package main

// seal.go is the whole of the CLI's message encryption, kept in one file so that it
// can be swapped for the e2e package's envelope once that exists. Until then the
// format is a placeholder: a single-shot HPKE seal (RFC 9180 base mode) of the plain
// text, the encapsulated key followed by the ciphertext, with sealInfo as the info.

import (
	"crypto/ecdh"
	"crypto/hpke"
	"fmt"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// sealInfo binds every ciphertext to this placeholder format, so that the real e2e
// format (which will use a different info) can never be mistaken for it or vice versa.
var sealInfo = []byte("herald cli v0")

// newDeviceAlgorithm is the scheme of keys that `herald device register` generates:
// the post-quantum hybrid, so that recorded traffic stays private.
const newDeviceAlgorithm = heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_MLKEM768_X25519

// kemFor returns the KEM of alg. Both algorithms use HKDF-SHA256 and
// ChaCha20-Poly1305, as types.proto specifies.
func kemFor(alg heraldv1.KeyAlgorithm) (hpke.KEM, error) {
	switch alg {
	case heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_MLKEM768_X25519:
		return hpke.MLKEM768X25519(), nil
	case heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_X25519:
		return hpke.DHKEM(ecdh.X25519()), nil
	}
	return nil, fmt.Errorf("unsupported key algorithm %s", alg)
}

// newDeviceKey generates a key pair for a new device. The private key is the KEM's
// serialised form (for ML-KEM-768+X25519, its 32-byte seed), for the state file.
func newDeviceKey() (alg heraldv1.KeyAlgorithm, private, public []byte, err error) {
	kem, err := kemFor(newDeviceAlgorithm)
	if err != nil {
		return 0, nil, nil, err
	}
	k, err := kem.GenerateKey()
	if err != nil {
		return 0, nil, nil, err
	}
	private, err = k.Bytes()
	if err != nil {
		return 0, nil, nil, err
	}
	return newDeviceAlgorithm, private, k.PublicKey().Bytes(), nil
}

// seal encrypts plaintext to one device's public key, as LookupRecipient returned it.
func seal(alg heraldv1.KeyAlgorithm, publicKey, plaintext []byte) ([]byte, error) {
	kem, err := kemFor(alg)
	if err != nil {
		return nil, err
	}
	pk, err := kem.NewPublicKey(publicKey)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return hpke.Seal(pk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), sealInfo, plaintext)
}

// open decrypts a ciphertext that seal made for this device's key.
func open(alg heraldv1.KeyAlgorithm, privateKey, ciphertext []byte) ([]byte, error) {
	kem, err := kemFor(alg)
	if err != nil {
		return nil, err
	}
	k, err := kem.NewPrivateKey(privateKey)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	return hpke.Open(k, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), sealInfo, ciphertext)
}
