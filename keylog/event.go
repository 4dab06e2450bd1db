package keylog

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"
)

// Kind is what happened to a key. Device kinds are below 0x10, business kinds from
// 0x11; the numbers are part of the leaf format and never change meaning.
type Kind uint8

const (
	// DeviceKeyAdded: a device registered with this key. The device may still wait
	// for the approval of the person's other devices.
	DeviceKeyAdded Kind = 0x01
	// DeviceKeyApproved: the person's other devices (or the waiting period) approved
	// the device and its key; from now on businesses seal to it.
	DeviceKeyApproved Kind = 0x02
	// DeviceKeyRemoved: the device and its key are gone; nothing is sealed to it again.
	DeviceKeyRemoved Kind = 0x03
	// DeviceKeyRotated: the device replaced its key with this one.
	DeviceKeyRotated Kind = 0x04

	// BusinessKeyAdded: the business registered its first signing key.
	BusinessKeyAdded Kind = 0x11
	// BusinessKeyRotated: the business made this new key current in a planned
	// rotation; the previous one still verifies what it signed until retired.
	BusinessKeyRotated Kind = 0x12
	// BusinessKeyReplaced: the business replaced its current key with this one (it
	// lost the old one, or no longer trusts it).
	BusinessKeyReplaced Kind = 0x13
	// BusinessKeyRetired: the business retired this key; nothing signed with it is
	// accepted any more.
	BusinessKeyRetired Kind = 0x14
)

var kindNames = map[Kind]string{
	DeviceKeyAdded:      "device-key-added",
	DeviceKeyApproved:   "device-key-approved",
	DeviceKeyRemoved:    "device-key-removed",
	DeviceKeyRotated:    "device-key-rotated",
	BusinessKeyAdded:    "business-key-added",
	BusinessKeyRotated:  "business-key-rotated",
	BusinessKeyReplaced: "business-key-replaced",
	BusinessKeyRetired:  "business-key-retired",
}

// String names the kind, or gives its number when it is unknown.
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Known reports whether k is one of the kinds above.
func (k Kind) Known() bool { _, ok := kindNames[k]; return ok }

// Device reports whether k is an event of a device key (else of a business key).
func (k Kind) Device() bool { return k < 0x10 }

// Event is one key event: the content of one leaf of the log.
type Event struct {
	Kind Kind
	// Owner is whose key it is: for a device event the recipient's uid (the HMAC of
	// the phone number, never the number: Encode refuses anything not shaped like a
	// uid), for a business event the business id.
	Owner string
	// ID names the key within its owner: the device id, or the business's key id.
	ID string
	// Algorithm names the key's algorithm: for a device key e2e.Algorithm's String
	// (mlkem768x25519, x25519), for a business key ed25519.
	Algorithm string
	// PublicKey is the key itself; a removal or retirement names the key it ends.
	PublicKey []byte
	// Time is when the gateway logged the event, kept to the millisecond.
	Time time.Time
}

// The leaf format, version 1. Every field has a fixed size or a length prefix, so one
// byte string means one event and one event has one byte string (Encode(Parse(b)) == b
// for every b that Parse accepts):
//
//	offset  size  field
//	0       1     version, 0x01
//	1       1     kind
//	2       8     time: Unix milliseconds, big-endian, > 0
//	10      2+n   owner: big-endian uint16 length n, then n bytes
//	…       2+n   id, the same way
//	…       2+n   algorithm, the same way
//	…       2+n   public key, the same way
//
// Owner, id and algorithm are 1 to 255 printable ASCII characters without spaces
// (0x21 to 0x7e); a device event's owner is a uid (26 characters of a-z, 2-7). The
// public key is 1 to 65535 bytes. Nothing follows the public key.
const (
	leafVersion   = 1
	leafHeader    = 1 + 1 + 8
	maxNameLength = 255
	uidLength     = 26
)

// Encode returns the leaf that records e, or an error wrapping ErrMalformed when e
// cannot be logged as it is (an unknown kind, an empty or oversized field, a device
// owner that is not a uid, a time before 1970).
func Encode(e Event) ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, leafHeader+8+len(e.Owner)+len(e.ID)+len(e.Algorithm)+len(e.PublicKey))
	b = append(b, leafVersion, byte(e.Kind))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixMilli()))
	for _, f := range [][]byte{[]byte(e.Owner), []byte(e.ID), []byte(e.Algorithm), e.PublicKey} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b, nil
}

// Parse reads a leaf written by Encode. It refuses, with an error wrapping
// ErrMalformed, anything Encode would not have written: another version, an unknown
// kind, a short or over-long leaf, a field out of bounds.
func Parse(leaf []byte) (Event, error) {
	if len(leaf) < leafHeader {
		return Event{}, malformed("leaf of %d bytes is shorter than its header", len(leaf))
	}
	if leaf[0] != leafVersion {
		return Event{}, malformed("leaf version %d, want %d", leaf[0], leafVersion)
	}
	e := Event{Kind: Kind(leaf[1]), Time: time.UnixMilli(int64(binary.BigEndian.Uint64(leaf[2:10])))}
	rest := leaf[leafHeader:]
	var fields [4][]byte
	for i := range fields {
		if len(rest) < 2 {
			return Event{}, malformed("leaf ends inside field %d's length", i)
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+n {
			return Event{}, malformed("field %d of %d bytes runs past the leaf's end", i, n)
		}
		fields[i], rest = rest[2:2+n], rest[2+n:]
	}
	if len(rest) != 0 {
		return Event{}, malformed("%d bytes after the public key", len(rest))
	}
	e.Owner, e.ID, e.Algorithm = string(fields[0]), string(fields[1]), string(fields[2])
	e.PublicKey = append([]byte(nil), fields[3]...)
	if err := e.check(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// check reports what stops e from being encoded.
func (e Event) check() error {
	if !e.Kind.Known() {
		return malformed("unknown kind %d", uint8(e.Kind))
	}
	if ms := e.Time.UnixMilli(); e.Time.IsZero() || ms <= 0 {
		return malformed("time %v is not after 1970", e.Time)
	}
	for _, f := range []struct{ name, v string }{{"owner", e.Owner}, {"id", e.ID}, {"algorithm", e.Algorithm}} {
		if err := checkName(f.name, f.v); err != nil {
			return err
		}
	}
	if e.Kind.Device() && !isUID(e.Owner) {
		return malformed("a device event's owner must be a recipient uid (26 base32 characters), not %d characters", len(e.Owner))
	}
	if len(e.PublicKey) == 0 || len(e.PublicKey) > 0xffff {
		return malformed("public key of %d bytes (want 1 to 65535)", len(e.PublicKey))
	}
	return nil
}

func checkName(field, s string) error {
	if len(s) == 0 || len(s) > maxNameLength {
		return malformed("%s of %d bytes (want 1 to %d)", field, len(s), maxNameLength)
	}
	for i := range len(s) {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return malformed("%s has byte %#x at %d (want printable ASCII, no spaces)", field, c, i)
		}
	}
	return nil
}

// isUID reports whether s is shaped like a recipient uid (keys.UID): 26 characters of
// the lower-case base32 alphabet. A phone number never is.
func isUID(s string) bool {
	if len(s) != uidLength {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// String describes the event for logs and audit output, without its key bytes.
func (e Event) String() string {
	return fmt.Sprintf("%s %s/%s %s (%d-byte key) at %s", e.Kind, e.Owner, e.ID, e.Algorithm,
		len(e.PublicKey), e.Time.UTC().Format(time.RFC3339Nano))
}
