package keylog_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/keylog"
)

const uid = "abcdefghijklmnopqrstuvwxyz" // shaped like keys.UID's output

var at = time.UnixMilli(1_767_225_600_123)

func deviceEvent(kind keylog.Kind) keylog.Event {
	return keylog.Event{Kind: kind, Owner: uid, ID: "phone_1", Algorithm: "x25519",
		PublicKey: bytes.Repeat([]byte{0xa5}, 32), Time: at}
}

func businessEvent(kind keylog.Kind) keylog.Event {
	return keylog.Event{Kind: kind, Owner: "acme_coffee", ID: "nbswy3dpeb3w64tmmqqq2345ab", Algorithm: "ed25519",
		PublicKey: bytes.Repeat([]byte{0x5a}, 32), Time: at}
}

func TestEventRoundTrip(t *testing.T) {
	t.Parallel()
	big := deviceEvent(keylog.DeviceKeyAdded)
	big.Algorithm, big.PublicKey = "mlkem768x25519", bytes.Repeat([]byte{1}, 1216)
	events := []keylog.Event{
		deviceEvent(keylog.DeviceKeyAdded), deviceEvent(keylog.DeviceKeyApproved),
		deviceEvent(keylog.DeviceKeyRemoved), deviceEvent(keylog.DeviceKeyRotated), big,
		businessEvent(keylog.BusinessKeyAdded), businessEvent(keylog.BusinessKeyRotated),
		businessEvent(keylog.BusinessKeyReplaced), businessEvent(keylog.BusinessKeyRetired),
	}
	for _, e := range events {
		leaf, err := keylog.Encode(e)
		if err != nil {
			t.Fatalf("Encode(%v): %v", e, err)
		}
		got, err := keylog.Parse(leaf)
		if err != nil {
			t.Fatalf("Parse(Encode(%v)): %v", e, err)
		}
		if !got.Time.Equal(e.Time) {
			t.Errorf("%v: time %v, want %v", e.Kind, got.Time, e.Time)
		}
		got.Time = e.Time
		if !reflect.DeepEqual(got, e) {
			t.Errorf("Parse(Encode(e)) = %+v, want %+v", got, e)
		}
	}
}

// TestEventLayout pins version 1 byte for byte: leaves already logged must parse
// forever, so a change of layout is a new version, never an edit.
func TestEventLayout(t *testing.T) {
	t.Parallel()
	e := keylog.Event{Kind: keylog.BusinessKeyRetired, Owner: "b", ID: "k", Algorithm: "ed25519",
		PublicKey: []byte{9, 8}, Time: time.UnixMilli(0x0102030405)}
	leaf, err := keylog.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{1, 0x14, 0, 0, 0, 1, 2, 3, 4, 5, 0, 1, 'b', 0, 1, 'k', 0, 7, 'e', 'd', '2', '5', '5', '1', '9', 0, 2, 9, 8}
	if !bytes.Equal(leaf, want) {
		t.Errorf("leaf = %v\n want %v", leaf, want)
	}
}

func TestEncodeRefuses(t *testing.T) {
	t.Parallel()
	cases := map[string]func(*keylog.Event){
		"unknown kind":             func(e *keylog.Event) { e.Kind = 0x05 },
		"no kind":                  func(e *keylog.Event) { e.Kind = 0 },
		"phone number as owner":    func(e *keylog.Event) { e.Owner = "+15551234567" },
		"uid of the wrong length":  func(e *keylog.Event) { e.Owner = uid[:25] },
		"uid not in base32":        func(e *keylog.Event) { e.Owner = strings.ToUpper(uid) },
		"no id":                    func(e *keylog.Event) { e.ID = "" },
		"space in id":              func(e *keylog.Event) { e.ID = "my phone" },
		"newline in algorithm":     func(e *keylog.Event) { e.Algorithm = "x25519\n" },
		"id too long":              func(e *keylog.Event) { e.ID = strings.Repeat("a", 256) },
		"no algorithm":             func(e *keylog.Event) { e.Algorithm = "" },
		"no public key":            func(e *keylog.Event) { e.PublicKey = nil },
		"public key too long":      func(e *keylog.Event) { e.PublicKey = make([]byte, 65536) },
		"no time":                  func(e *keylog.Event) { e.Time = time.Time{} },
		"time at 1970":             func(e *keylog.Event) { e.Time = time.UnixMilli(0) },
		"time before 1970":         func(e *keylog.Event) { e.Time = time.UnixMilli(-1) },
		"non-ASCII business owner": func(e *keylog.Event) { e.Kind, e.Owner = keylog.BusinessKeyAdded, "café" },
	}
	for name, change := range cases {
		e := deviceEvent(keylog.DeviceKeyAdded)
		change(&e)
		if _, err := keylog.Encode(e); !errors.Is(err, keylog.ErrMalformed) {
			t.Errorf("%s: Encode error %v, want ErrMalformed", name, err)
		}
	}
	// A business owner is an id, not a uid.
	if _, err := keylog.Encode(businessEvent(keylog.BusinessKeyAdded)); err != nil {
		t.Errorf("business event: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	good, err := keylog.Encode(deviceEvent(keylog.DeviceKeyRotated))
	if err != nil {
		t.Fatal(err)
	}
	// Every proper prefix is short somewhere.
	for n := range len(good) {
		if _, err := keylog.Parse(good[:n]); !errors.Is(err, keylog.ErrMalformed) {
			t.Errorf("Parse of the first %d of %d bytes: %v, want ErrMalformed", n, len(good), err)
		}
	}
	with := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"trailing byte":   append(bytes.Clone(good), 0),
		"version 0":       with(func(b []byte) []byte { b[0] = 0; return b }),
		"version 2":       with(func(b []byte) []byte { b[0] = 2; return b }),
		"unknown kind":    with(func(b []byte) []byte { b[1] = 0x7f; return b }),
		"zero time":       with(func(b []byte) []byte { clear(b[2:10]); return b }),
		"negative time":   with(func(b []byte) []byte { binary.BigEndian.PutUint64(b[2:], 1<<63); return b }),
		"owner too long":  with(func(b []byte) []byte { b[11]++; return b }),
		"owner too short": with(func(b []byte) []byte { b[11]--; return b }),
		"owner not a uid": with(func(b []byte) []byte { b[12] = 'A'; return b }),
	}
	for name, leaf := range cases {
		if _, err := keylog.Parse(leaf); !errors.Is(err, keylog.ErrMalformed) {
			t.Errorf("%s: Parse error %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzParse checks that the format is canonical: whatever Parse accepts, Encode
// writes back byte for byte, so no two leaves record the same event.
func FuzzParse(f *testing.F) {
	for _, e := range []keylog.Event{deviceEvent(keylog.DeviceKeyAdded), businessEvent(keylog.BusinessKeyReplaced)} {
		leaf, err := keylog.Encode(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(leaf)
	}
	f.Fuzz(func(t *testing.T, leaf []byte) {
		e, err := keylog.Parse(leaf)
		if err != nil {
			if !errors.Is(err, keylog.ErrMalformed) {
				t.Fatalf("Parse error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := keylog.Encode(e)
		if err != nil {
			t.Fatalf("Encode(Parse(leaf)): %v", err)
		}
		if !bytes.Equal(again, leaf) {
			t.Fatalf("Encode(Parse(%x)) = %x", leaf, again)
		}
	})
}

func TestKindString(t *testing.T) {
	t.Parallel()
	if got := keylog.DeviceKeyApproved.String(); got != "device-key-approved" {
		t.Errorf("String = %q", got)
	}
	if got := keylog.Kind(0x7f).String(); got != "kind(127)" {
		t.Errorf("String = %q", got)
	}
	if !keylog.DeviceKeyRemoved.Device() || keylog.BusinessKeyRetired.Device() {
		t.Error("Device() wrong")
	}
}
