package push

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"math/big"
)

// verifyES256 checks a compact JWS signed with ES256 under pub, for tests and for
// checking a configured key pair.
func verifyES256(token string, pub *ecdsa.PublicKey) bool {
	i := len(token) - 1
	for i >= 0 && token[i] != '.' {
		i--
	}
	if i < 0 {
		return false
	}
	sig, err := b64.DecodeString(token[i+1:])
	if err != nil || len(sig) != 64 {
		return false
	}
	digest := sha256.Sum256([]byte(token[:i]))
	return ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
}
