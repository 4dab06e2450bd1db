package keylog

import (
	"bytes"
	"encoding/base64"
	"strconv"

	"github.com/transparency-dev/merkle/rfc6962"
)

// Checkpoint is the log's statement of its tree at one size: the C2SP tlog-checkpoint
// body, three lines and nothing else:
//
//	<origin>
//	<size, decimal, no leading zeros>
//	<root hash, standard base64 of 32 bytes>
//
// Signed by the log key, it commits the log to the first Size leaves, in order:
// anyone holding it can check that a leaf is among them (an inclusion proof) and that
// a later checkpoint extends it (a consistency proof).
type Checkpoint struct {
	// Origin names the log; it is the log key's name.
	Origin string
	// Size is the number of leaves the tree holds.
	Size uint64
	// Root is the RFC 6962 root hash of the tree (SHA-256 of the empty string for an
	// empty tree).
	Root []byte
}

// Signed is a checkpoint with its signed note, the bytes a gateway hands out and a
// Verifier takes.
type Signed struct {
	Checkpoint
	// Note is the signed note: the checkpoint's text, a blank line and the signature
	// lines.
	Note []byte
}

// HashSize is the length of every hash of the log: leaf, node and root hashes.
const HashSize = 32

// EmptyRoot is the root hash of the empty tree.
func EmptyRoot() []byte { return rfc6962.DefaultHasher.EmptyRoot() }

// LeafHash is the RFC 6962 hash of a leaf: SHA-256 of 0x00 and the leaf.
func LeafHash(leaf []byte) []byte { return rfc6962.DefaultHasher.HashLeaf(leaf) }

// NodeHash is the RFC 6962 hash of an inner node: SHA-256 of 0x01 and its children's
// hashes.
func NodeHash(left, right []byte) []byte { return rfc6962.DefaultHasher.HashChildren(left, right) }

func (c Checkpoint) marshal() ([]byte, error) {
	if err := checkKeyName(c.Origin); err != nil {
		return nil, err
	}
	if len(c.Root) != HashSize {
		return nil, malformed("root hash of %d bytes", len(c.Root))
	}
	b := make([]byte, 0, len(c.Origin)+70)
	b = append(b, c.Origin...)
	b = append(b, '\n')
	b = strconv.AppendUint(b, c.Size, 10)
	b = append(b, '\n')
	b = base64.StdEncoding.AppendEncode(b, c.Root)
	return append(b, '\n'), nil
}

// parseCheckpoint reads a checkpoint's text as marshal writes it, and nothing else.
func parseCheckpoint(text []byte) (Checkpoint, error) {
	lines := bytes.Split(text, []byte("\n"))
	if len(lines) != 4 || len(lines[3]) != 0 {
		return Checkpoint{}, malformed("checkpoint is not three lines")
	}
	c := Checkpoint{Origin: string(lines[0])}
	size, err := strconv.ParseUint(string(lines[1]), 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != string(lines[1]) {
		return Checkpoint{}, malformed("checkpoint size %q", lines[1])
	}
	c.Size = size
	root, err := base64.StdEncoding.DecodeString(string(lines[2]))
	if err != nil || len(root) != HashSize {
		return Checkpoint{}, malformed("checkpoint root %q", lines[2])
	}
	c.Root = root
	// What marshal would write must be what was read: one checkpoint, one text.
	if again, err := c.marshal(); err != nil || !bytes.Equal(again, text) {
		return Checkpoint{}, malformed("checkpoint is not in canonical form")
	}
	return c, nil
}
