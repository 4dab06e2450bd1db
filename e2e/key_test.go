package e2e

import (
	"bytes"
	"errors"
	"regexp"
	"slices"
	"testing"
)

func TestDeviceKeySurvivesStorage(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "a receipt")
	for _, id := range []string{"phone", "laptop"} {
		k := hh.keys[id]
		t.Run(k.Algorithm().String(), func(t *testing.T) {
			if got, want := len(k.PublicKey()), k.Algorithm().PublicKeySize(); got != want {
				t.Errorf("public key is %d bytes, want %d", got, want)
			}
			stored, err := k.MarshalPrivate()
			if err != nil {
				t.Fatal(err)
			}
			if len(stored) != 2+privateKeySize {
				t.Errorf("stored key is %d bytes, want %d", len(stored), 2+privateKeySize)
			}
			back, err := ParseDeviceKey(stored)
			if err != nil {
				t.Fatal(err)
			}
			if back.Algorithm() != k.Algorithm() || !bytes.Equal(back.PublicKey(), k.PublicKey()) || back.KeyID() != k.KeyID() {
				t.Fatal("parsed key differs from the marshalled one")
			}
			if _, err := Open(back, id, hh.header, hh.business.PublicKey(), envelope(t, s, id)); err != nil {
				t.Fatalf("parsed key cannot open: %v", err)
			}
		})
	}
}

func TestParseDeviceKeyRefuses(t *testing.T) {
	t.Parallel()
	k, err := GenerateDeviceKey(X25519)
	if err != nil {
		t.Fatal(err)
	}
	good, err := k.MarshalPrivate()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"nil", nil, ErrMalformed},
		{"version only", []byte{Version}, ErrMalformed},
		{"version 2", append([]byte{2}, good[1:]...), ErrUnsupportedVersion},
		{"algorithm 7", append([]byte{Version, 7}, good[2:]...), ErrUnsupportedAlgorithm},
		{"short", good[:len(good)-1], ErrMalformed},
		{"long", append(bytes.Clone(good), 0), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if k, err := ParseDeviceKey(tc.b); !errors.Is(err, tc.want) || k != nil {
				t.Errorf("ParseDeviceKey = %v, %v; want %v", k, err, tc.want)
			}
		})
	}
	if _, err := GenerateDeviceKey(0); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Errorf("GenerateDeviceKey(0): err = %v, want ErrUnsupportedAlgorithm", err)
	}
}

func TestKeyIDIsShortStableAndDistinct(t *testing.T) {
	t.Parallel()
	a, _ := GenerateDeviceKey(MLKEM768X25519)
	b, _ := GenerateDeviceKey(MLKEM768X25519)
	id := KeyID(a.PublicKey())
	if !regexp.MustCompile(`^[a-z2-7]{26}$`).MatchString(id) {
		t.Errorf("KeyID = %q, want 26 lowercase base32 characters", id)
	}
	if id != a.KeyID() || id != KeyID(a.PublicKey()) {
		t.Error("KeyID is not stable")
	}
	if id == b.KeyID() {
		t.Error("two keys share a KeyID")
	}
	// Pinned (computed with sha256sum and Python base64), so a change of the derivation
	// cannot go unnoticed.
	if got := KeyID([]byte("herald")); got != "dsc367j4eyebpw2uhkk4bzjnai" {
		t.Errorf(`KeyID("herald") = %q`, got)
	}
}

func TestSigningKeySurvivesStorage(t *testing.T) {
	t.Parallel()
	k, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSigningKey(k.MarshalPrivate())
	if err != nil {
		t.Fatal(err)
	}
	if !back.PublicKey().Equal(k.PublicKey()) {
		t.Error("parsed signing key has another public key")
	}
	if _, err := ParseSigningKey(make([]byte, 31)); !errors.Is(err, ErrMalformed) {
		t.Errorf("short seed: err = %v, want ErrMalformed", err)
	}
}

// TestCheckPublicKey: real keys of both algorithms pass; junk that parses as bytes of
// the right length does not.
func TestCheckPublicKey(t *testing.T) {
	t.Parallel()
	for _, alg := range []Algorithm{MLKEM768X25519, X25519} {
		k, err := GenerateDeviceKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckPublicKey(alg, k.PublicKey()); err != nil {
			t.Errorf("%s: a generated key: %v", alg, err)
		}
	}
	good, _ := GenerateDeviceKey(MLKEM768X25519)
	hybrid := good.PublicKey()
	mlkemPart, point := hybrid[:1184], hybrid[1184:]
	// 0 and 1 are points of low order; so is 2^255-19 (p, an encoding of 0).
	lowOrder := [][]byte{make([]byte, 32), append([]byte{1}, make([]byte, 31)...),
		append([]byte{0xec}, append(bytes.Repeat([]byte{0xff}, 30), 0x7f)...)}
	cases := map[string]struct {
		alg Algorithm
		pub []byte
	}{
		"x25519 too short":             {X25519, make([]byte, 31)},
		"x25519 zero point":            {X25519, lowOrder[0]},
		"x25519 point 1":               {X25519, lowOrder[1]},
		"x25519 point p":               {X25519, lowOrder[2]},
		"hybrid the size of x25519":    {MLKEM768X25519, make([]byte, 32)},
		"hybrid all zeros":             {MLKEM768X25519, make([]byte, 1216)},
		"hybrid ml-kem vector zero":    {MLKEM768X25519, slices.Concat(make([]byte, 1152), mlkemPart[1152:], point)},
		"hybrid ml-kem out of range":   {MLKEM768X25519, slices.Concat(bytes.Repeat([]byte{0xff}, 1152), mlkemPart[1152:], point)},
		"hybrid x25519 part low order": {MLKEM768X25519, slices.Concat(mlkemPart, lowOrder[0])},
		"hybrid one byte long":         {MLKEM768X25519, append(slices.Clone(hybrid), 0)},
		"unknown algorithm":            {Algorithm(9), hybrid},
	}
	for name, c := range cases {
		err := CheckPublicKey(c.alg, c.pub)
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedAlgorithm) {
			t.Errorf("%s: CheckPublicKey = %v, want a refusal", name, err)
		}
	}
}

// TestChallenge: a challenge opens with the key it was sealed to, and with no other.
func TestChallenge(t *testing.T) {
	t.Parallel()
	for _, alg := range []Algorithm{MLKEM768X25519, X25519} {
		k, _ := GenerateDeviceKey(alg)
		other, _ := GenerateDeviceKey(alg)
		ch, err := SealChallenge(alg, k.PublicKey(), []byte("secret"))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := k.OpenChallenge(ch); err != nil || string(got) != "secret" {
			t.Errorf("%s: OpenChallenge = %q, %v", alg, got, err)
		}
		if _, err := other.OpenChallenge(ch); !errors.Is(err, ErrNotForThisDevice) {
			t.Errorf("%s: another key opened the challenge: %v", alg, err)
		}
	}
}
