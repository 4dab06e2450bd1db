package keylog

import (
	"errors"
	"fmt"
)

// Errors that Parse, the key parsers and Verifier return, wrapped with detail. Branch
// on them with errors.Is; each says what the caller should do next.
var (
	// ErrMalformed means the bytes are not a leaf, checkpoint, signed note or key text
	// of the format this package writes. Drop them; they prove nothing.
	ErrMalformed = errors.New("keylog: malformed")

	// ErrBadSignature means a checkpoint carries no valid signature by the log's key:
	// it was signed by another key, altered after signing, or names another log.
	// Drop it; it is not the log's word.
	ErrBadSignature = errors.New("keylog: no valid signature by the log's key")

	// ErrNotIncluded means the leaf is not at that index of the tree the checkpoint
	// commits to: the leaf, the proof or the log's stored tree was altered, or the
	// proof is for another size. Refuse the key the leaf names.
	ErrNotIncluded = errors.New("keylog: leaf not in the log")

	// ErrInconsistent means a checkpoint cannot be a view of the same append-only log
	// as the last one seen: the log rewrote its history or shows different logs to
	// different people. Refuse it, keep the last one, and report both: the error is a
	// *ConsistencyError holding the two signed notes.
	ErrInconsistent = errors.New("keylog: checkpoint inconsistent with the last one seen")
)

// ConsistencyError is the evidence of an inconsistent checkpoint: the last checkpoint
// the Verifier had accepted and the one it refused, both as signed by the log. When
// their sizes are equal and their roots differ, the two notes alone prove to anyone
// that the log signed two different histories. errors.Is(err, ErrInconsistent) holds.
type ConsistencyError struct {
	// Seen is the signed note of the last checkpoint accepted before.
	Seen []byte
	// Shown is the signed note of the checkpoint refused.
	Shown []byte
	// Reason says what did not hold.
	Reason error
}

func (e *ConsistencyError) Error() string {
	return fmt.Sprintf("%v: %v", ErrInconsistent, e.Reason)
}

// Is makes errors.Is(err, ErrInconsistent) hold.
func (e *ConsistencyError) Is(target error) bool { return target == ErrInconsistent }

// Unwrap gives the reason, for errors.As on what the proof check returned.
func (e *ConsistencyError) Unwrap() error { return e.Reason }

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
