package e2e

import (
	"errors"
	"fmt"
)

// Errors that Open, Inspect, SplitEnvelope, VerifyEndorsement and the key parsers
// return, wrapped with detail. Branch on them with errors.Is; each names what the
// caller should do next.
var (
	// ErrMalformed means the bytes are not a well-formed envelope, record or key of a
	// supported version: truncated, trailing bytes, an impossible length or value, or a
	// signed envelope whose parts do not decrypt together (a broken sender). Drop it.
	ErrMalformed = errors.New("e2e: malformed")

	// ErrUnsupportedVersion means the bytes start with a format version this package
	// does not know, most likely from a newer sender. Updating the SDK may help.
	ErrUnsupportedVersion = errors.New("e2e: unsupported format version")

	// ErrUnsupportedAlgorithm means a key algorithm id this package does not know.
	ErrUnsupportedAlgorithm = errors.New("e2e: unsupported key algorithm")

	// ErrNotForThisDevice means the envelope was sealed for another device id or for
	// another key of this device (for example a key it has since rotated away from).
	ErrNotForThisDevice = errors.New("e2e: not for this device")

	// ErrBadSignature means the envelope is not signed by the business key the caller
	// trusts: it was forged, altered in transit, or signed with another key.
	ErrBadSignature = errors.New("e2e: bad signature")

	// ErrBadEndorsement means a signing-key endorsement (VerifyEndorsement) is not the
	// endorsing key's signature over that business and key: forged, altered, or made
	// for another business or key. Do not trust the key on its strength.
	ErrBadEndorsement = errors.New("e2e: bad signing-key endorsement")

	// ErrHeaderMismatch means the envelope is authentic but the routing metadata the
	// delivery claims differs from what the business sealed. The error is a
	// *HeaderMismatchError naming the field.
	ErrHeaderMismatch = errors.New("e2e: header mismatch")

	// ErrInvalidHeader means Seal was given a Header it cannot seal: an empty or too long
	// field, or an unset category, kind or send time.
	ErrInvalidHeader = errors.New("e2e: invalid header")
)

// HeaderMismatchError reports one field of the routing metadata that the delivery
// claims differently from the sealed, signed header. errors.Is(err, ErrHeaderMismatch)
// holds for it.
type HeaderMismatchError struct {
	// Field is the proto field name of the first field that differs: "business_id",
	// "category", "kind", "client_message_id" or "sent_time".
	Field string
	// Sealed is the value the business signed, printed.
	Sealed string
	// Delivered is the value the delivery claims, printed.
	Delivered string
}

// Error implements error.
func (e *HeaderMismatchError) Error() string {
	return fmt.Sprintf("e2e: header mismatch: %s sealed as %q, delivered as %q", e.Field, e.Sealed, e.Delivered)
}

// Unwrap makes errors.Is(err, ErrHeaderMismatch) hold.
func (e *HeaderMismatchError) Unwrap() error { return ErrHeaderMismatch }

// malformed returns ErrMalformed with what was wrong.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// invalidHeader returns ErrInvalidHeader with what was wrong.
func invalidHeader(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidHeader, fmt.Sprintf(format, args...))
}
