package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestMalformedEnvelopes(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "a receipt")
	env := envelope(t, s, "laptop")
	wrapAt := envelopeHead + len(s.Body)

	with := func(change func(b []byte) []byte) []byte { return change(bytes.Clone(env)) }
	for _, tc := range []struct {
		name     string
		envelope []byte
		want     error
	}{
		{"nil", nil, ErrMalformed},
		{"empty", []byte{}, ErrMalformed},
		{"version only", []byte{Version}, ErrMalformed},
		{"envelope version 0", with(func(b []byte) []byte { b[0] = 0; return b }), ErrUnsupportedVersion},
		{"envelope version 2", with(func(b []byte) []byte { b[0] = 2; return b }), ErrUnsupportedVersion},
		{"body version 2", with(func(b []byte) []byte { b[envelopeHead] = 2; return b }), ErrUnsupportedVersion},
		{"wrap version 2", with(func(b []byte) []byte { b[wrapAt] = 2; return b }), ErrUnsupportedVersion},
		{"wrap algorithm 0", with(func(b []byte) []byte { b[wrapAt+1] = 0; return b }), ErrUnsupportedAlgorithm},
		{"wrap algorithm 3", with(func(b []byte) []byte { b[wrapAt+1] = 3; return b }), ErrUnsupportedAlgorithm},
		{"wrap algorithm of the other kind", with(func(b []byte) []byte { b[wrapAt+1] = byte(MLKEM768X25519); return b }), ErrMalformed},
		{"body length past the end", with(func(b []byte) []byte { binary.BigEndian.PutUint32(b[1:], uint32(len(b))); return b }), ErrMalformed},
		{"body length max", with(func(b []byte) []byte { binary.BigEndian.PutUint32(b[1:], ^uint32(0)); return b }), ErrMalformed},
		{"body length 0", with(func(b []byte) []byte { binary.BigEndian.PutUint32(b[1:], 0); return b }), ErrMalformed},
		{"business id length past the body", with(func(b []byte) []byte { b[envelopeHead+1] = 255; return b }), ErrMalformed},
		{"empty business id", with(func(b []byte) []byte { b[envelopeHead+1] = 0; return b }), ErrMalformed},
		{"no wrap", JoinEnvelope(s.Body, nil), ErrMalformed},
		{"trailing byte", append(bytes.Clone(env), 0), ErrMalformed},
		{"two wraps", append(bytes.Clone(env), s.Wraps["laptop"]...), ErrMalformed},
		{"wrap as body", JoinEnvelope(s.Wraps["laptop"], s.Wraps["laptop"]), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := hh.open("laptop", hh.header, tc.envelope)
			if !errors.Is(err, tc.want) || m != nil {
				t.Errorf("Open = %v, %v; want %v", m, err, tc.want)
			}
			if _, _, err := Inspect(tc.envelope); err == nil {
				t.Error("Inspect accepted it")
			}
		})
	}
}

// TestEveryTruncationIsRefused cuts envelopes of both algorithms at every length.
func TestEveryTruncationIsRefused(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "a receipt")
	for _, id := range []string{"phone", "laptop"} {
		env := envelope(t, s, id)
		for n := range len(env) {
			m, err := hh.open(id, hh.header, env[:n])
			if err == nil || m != nil || !isTyped(err) {
				t.Fatalf("%s cut to %d of %d bytes: Open = %v, %v", id, n, len(env), m, err)
			}
		}
	}
}

func TestSplitEnvelopeInvertsJoin(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "a receipt")
	body, wrap, err := SplitEnvelope(envelope(t, s, "phone"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, s.Body) || !bytes.Equal(wrap, s.Wraps["phone"]) {
		t.Error("SplitEnvelope does not return the parts JoinEnvelope joined")
	}
}

// FuzzOpen feeds Open arbitrary envelopes: it must never panic, and must accept nothing
// but the envelope the business sealed.
func FuzzOpen(f *testing.F) {
	hh := newHousehold(f)
	s := hh.seal(f, "a receipt")
	genuine := envelope(f, s, "laptop")
	f.Add(genuine)
	f.Add(envelope(f, s, "phone"))
	f.Add(genuine[:envelopeHead+len(s.Body)])
	f.Add([]byte{Version, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, env []byte) {
		m, err := hh.open("laptop", hh.header, env)
		if err == nil && !bytes.Equal(env, genuine) {
			t.Fatalf("accepted an envelope that is not the sealed one: %x", env)
		}
		if err != nil && (m != nil || !isTyped(err)) {
			t.Fatalf("Open = %v, %v", m, err)
		}
		Inspect(env)
	})
}

func FuzzParseDeviceKey(f *testing.F) {
	for _, alg := range []Algorithm{MLKEM768X25519, X25519} {
		k, err := GenerateDeviceKey(alg)
		if err != nil {
			f.Fatal(err)
		}
		b, err := k.MarshalPrivate()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseDeviceKey(b)
		if err != nil {
			if k != nil || !isTyped(err) {
				t.Fatalf("ParseDeviceKey = %v, %v", k, err)
			}
			return
		}
		again, err := k.MarshalPrivate()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseDeviceKey(again); err != nil {
			t.Fatalf("re-parsing a marshalled key: %v", err)
		}
	})
}
