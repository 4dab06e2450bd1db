package keylog

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Verifier is what an SDK runs to trust the log without trusting the gateway: it
// holds the log's published verifier key and the newest checkpoint it has accepted,
// and accepts a checkpoint only when the log signed it and it is consistent with that
// one. It needs no Redis. It is safe for concurrent use.
//
// The newest checkpoint is the Verifier's memory of the log; an SDK keeps it across
// restarts (Last, then NewVerifier with it), or an operator who rewrites history
// between two runs is not caught.
type Verifier struct {
	key verifierKey

	mu   sync.Mutex
	last Signed // Note is nil until the first checkpoint is accepted
}

// NewVerifier returns a Verifier for the log whose verifier key text is vkey (see
// GenerateKey). last is the signed note of the newest checkpoint accepted before, as
// Last returned it, or nil for a Verifier that has seen none and will take the first
// checkpoint it is given on trust.
func NewVerifier(vkey string, last []byte) (*Verifier, error) {
	k, err := parseVerifierKey(vkey)
	if err != nil {
		return nil, err
	}
	v := &Verifier{key: k}
	if last != nil {
		c, err := v.Open(last)
		if err != nil {
			return nil, fmt.Errorf("the last checkpoint kept: %w", err)
		}
		v.last = Signed{Checkpoint: c, Note: bytes.Clone(last)}
	}
	return v, nil
}

// Origin is the name of the log the Verifier checks.
func (v *Verifier) Origin() string { return v.key.name }

// Open checks that note is a checkpoint of this log signed by its key, and returns
// the checkpoint. It does not compare it with the newest one accepted: Update does.
func (v *Verifier) Open(note []byte) (Checkpoint, error) {
	text, err := v.key.open(note)
	if err != nil {
		return Checkpoint{}, err
	}
	c, err := parseCheckpoint(text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.key.name {
		return Checkpoint{}, fmt.Errorf("%w: the checkpoint is of log %q, not %q", ErrBadSignature, c.Origin, v.key.name)
	}
	return c, nil
}

// Update accepts the signed checkpoint note if the log signed it and it is consistent
// with the newest checkpoint accepted before, and returns it. proof is the
// consistency proof between the two, from the smaller size to the larger (empty when
// the sizes are equal or no checkpoint was accepted before):
//
//   - a larger checkpoint must extend the newest one; it becomes the newest;
//   - one of the same size must have the same root;
//   - a smaller one must be a prefix of the newest; it is accepted (a leaf may be
//     checked against it), and the newest stays.
//
// Anything else is an error wrapping ErrInconsistent (a *ConsistencyError with both
// notes), and the Verifier keeps what it had. A badly signed note is ErrBadSignature.
func (v *Verifier) Update(note []byte, consistency [][]byte) (Checkpoint, error) {
	c, err := v.Open(note)
	if err != nil {
		return Checkpoint{}, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	last := v.last
	if last.Note == nil {
		v.last = Signed{Checkpoint: c, Note: bytes.Clone(note)}
		return c, nil
	}
	small, large := last.Checkpoint, c
	if c.Size < last.Size {
		small, large = c, last.Checkpoint
	}
	err = proof.VerifyConsistency(rfc6962.DefaultHasher, small.Size, large.Size, consistency, small.Root, large.Root)
	if err != nil {
		if c.Size == last.Size && !bytes.Equal(c.Root, last.Root) {
			err = errors.New("same size, different root")
		}
		return Checkpoint{}, &ConsistencyError{
			Seen:  bytes.Clone(last.Note),
			Shown: bytes.Clone(note),
			Reason: fmt.Errorf("the checkpoint of size %d against the one of size %d: %w",
				c.Size, last.Size, err),
		}
	}
	if c.Size > last.Size {
		v.last = Signed{Checkpoint: c, Note: bytes.Clone(note)}
	}
	return c, nil
}

// Last returns the newest checkpoint accepted, with its signed note to keep; ok is
// false when none was.
func (v *Verifier) Last() (s Signed, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.last.Note == nil {
		return Signed{}, false
	}
	return Signed{Checkpoint: v.last.Checkpoint, Note: bytes.Clone(v.last.Note)}, true
}

// VerifyInclusion checks that leaf is the leaf at index of the tree that c commits to,
// by its inclusion proof, and returns the event it records. c must be a checkpoint
// that Update accepted. An error wraps ErrNotIncluded (refuse the key), or
// ErrMalformed when the log holds a leaf that is not an event.
func (v *Verifier) VerifyInclusion(c Checkpoint, index uint64, leaf []byte, inclusion [][]byte) (Event, error) {
	if c.Origin != v.key.name {
		return Event{}, fmt.Errorf("%w: the checkpoint is of log %q, not %q", ErrNotIncluded, c.Origin, v.key.name)
	}
	err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, c.Size, LeafHash(leaf), inclusion, c.Root)
	if err != nil {
		return Event{}, fmt.Errorf("%w: leaf %d in the tree of size %d: %w", ErrNotIncluded, index, c.Size, err)
	}
	e, err := Parse(leaf)
	if err != nil {
		return Event{}, fmt.Errorf("leaf %d: %w", index, err)
	}
	return e, nil
}
