package e2e

import (
	"crypto/hpke"
	"fmt"
)

// A key challenge proves that a device holds the private half of its current key, so
// that a stolen device token alone cannot replace the key (and read what comes next):
// the gateway seals a secret to the current public key, and only its holder can say
// what it was. The HPKE info binds the message to this use, so a challenge can never
// be passed off as a message wrap or the other way round.
var challengeInfo = []byte("herald key challenge v1")

// SealChallenge seals secret to the device public key pub of algorithm alg, for
// DeviceKey.OpenChallenge.
func SealChallenge(alg Algorithm, pub, secret []byte) ([]byte, error) {
	kem, err := alg.kem()
	if err != nil {
		return nil, err
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %s key: %v", ErrMalformed, alg, err)
	}
	return hpke.Seal(pk, hpkeKDF, hpkeAEAD, challengeInfo, secret)
}

// OpenChallenge opens a challenge sealed to this key by SealChallenge and returns the
// secret, which proves to the gateway that the device holds the key. It fails with
// ErrNotForThisDevice when the challenge was sealed to another key.
func (k *DeviceKey) OpenChallenge(challenge []byte) ([]byte, error) {
	secret, err := hpke.Open(k.priv, hpkeKDF, hpkeAEAD, challengeInfo, challenge)
	if err != nil {
		return nil, fmt.Errorf("%w: the challenge does not open with key %s", ErrNotForThisDevice, k.KeyID())
	}
	return secret, nil
}
