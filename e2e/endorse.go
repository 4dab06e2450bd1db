package e2e

import (
	"crypto/ed25519"
	"fmt"
)

// endorsementLabel separates endorsements from every other signature a business key
// makes: an envelope signature can never pass for an endorsement, nor the reverse.
const endorsementLabel = "herald-e2e v1 signing-key endorsement"

// EndorseSigningKey is old's endorsement of next as a signing key of the business
// businessID: old's Ed25519 signature over
//
//	"herald-e2e v1 signing-key endorsement" || 0x00 || business id (string) || next
//
// A business that rotates its key has its current key endorse the new one, and a device
// that trusts the old key trusts the new one on that endorsement, without asking the
// person (VerifyEndorsement). The business id is bound in, so an endorsement made for
// one business cannot vouch for a key of another. The error wraps ErrMalformed: next
// is not an Ed25519 public key, or businessID is empty or longer than 255 bytes.
func EndorseSigningKey(old *SigningKey, businessID string, next ed25519.PublicKey) ([]byte, error) {
	msg, err := endorsedMessage(businessID, next)
	if err != nil {
		return nil, err
	}
	return ed25519.Sign(old.priv, msg), nil
}

// VerifyEndorsement checks that sig is old's endorsement of next for businessID
// (EndorseSigningKey). It returns nil if so, an error wrapping ErrBadEndorsement if the
// signature is not old's over exactly that business and key, and one wrapping
// ErrMalformed if a key is not an Ed25519 public key or the business id is not one
// EndorseSigningKey accepts.
func VerifyEndorsement(old ed25519.PublicKey, businessID string, next ed25519.PublicKey, sig []byte) error {
	if len(old) != ed25519.PublicKeySize {
		return malformed("endorsing key is %d bytes, want %d", len(old), ed25519.PublicKeySize)
	}
	msg, err := endorsedMessage(businessID, next)
	if err != nil {
		return err
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(old, msg, sig) {
		return fmt.Errorf("%w: key %s did not endorse key %s for business %s", ErrBadEndorsement, KeyID(old), KeyID(next), businessID)
	}
	return nil
}

// endorsedMessage is what an endorsement signs. The business id is a length-prefixed
// string and the key has a fixed length, so no two (business, key) pairs give the same
// bytes.
func endorsedMessage(businessID string, next ed25519.PublicKey) ([]byte, error) {
	if len(next) != ed25519.PublicKeySize {
		return nil, malformed("endorsed key is %d bytes, want %d", len(next), ed25519.PublicKeySize)
	}
	if len(businessID) == 0 || len(businessID) > 255 {
		return nil, malformed("business id of %d bytes, want 1 to 255", len(businessID))
	}
	b := make([]byte, 0, len(endorsementLabel)+2+len(businessID)+len(next))
	b = append(b, endorsementLabel...)
	b = append(b, 0)
	b = appendString(b, businessID)
	return append(b, next...), nil
}
