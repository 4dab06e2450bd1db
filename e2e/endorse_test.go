package e2e

import (
	"errors"
	"strings"
	"testing"
)

// TestEndorsement: an endorsement verifies for exactly the business, endorsing key and
// endorsed key it was made for, and fails for any other, or with any bit changed.
func TestEndorsement(t *testing.T) {
	t.Parallel()
	old, _ := GenerateSigningKey()
	next, _ := GenerateSigningKey()
	other, _ := GenerateSigningKey()
	const biz = "biz_acme"
	sig, err := EndorseSigningKey(old, biz, next.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyEndorsement(old.PublicKey(), biz, next.PublicKey(), sig); err != nil {
		t.Fatalf("a good endorsement: %v", err)
	}
	flip := func(b []byte, i int) []byte {
		c := append([]byte(nil), b...)
		c[i] ^= 1
		return c
	}
	for _, tc := range []struct {
		name      string
		old, next []byte
		biz       string
		sig       []byte
		want      error
	}{
		{"another business", old.PublicKey(), next.PublicKey(), "biz_acmf", sig, ErrBadEndorsement},
		{"a longer business id", old.PublicKey(), next.PublicKey(), biz + "x", sig, ErrBadEndorsement},
		{"another endorsing key", other.PublicKey(), next.PublicKey(), biz, sig, ErrBadEndorsement},
		{"another endorsed key", old.PublicKey(), other.PublicKey(), biz, sig, ErrBadEndorsement},
		{"the keys swapped", next.PublicKey(), old.PublicKey(), biz, sig, ErrBadEndorsement},
		{"first signature byte flipped", old.PublicKey(), next.PublicKey(), biz, flip(sig, 0), ErrBadEndorsement},
		{"last signature byte flipped", old.PublicKey(), next.PublicKey(), biz, flip(sig, len(sig)-1), ErrBadEndorsement},
		{"endorsed key byte flipped", old.PublicKey(), flip(next.PublicKey(), 7), biz, sig, ErrBadEndorsement},
		{"short signature", old.PublicKey(), next.PublicKey(), biz, sig[:63], ErrBadEndorsement},
		{"no signature", old.PublicKey(), next.PublicKey(), biz, nil, ErrBadEndorsement},
		{"short endorsing key", old.PublicKey()[:31], next.PublicKey(), biz, sig, ErrMalformed},
		{"short endorsed key", old.PublicKey(), next.PublicKey()[:31], biz, sig, ErrMalformed},
		{"no business id", old.PublicKey(), next.PublicKey(), "", sig, ErrMalformed},
		{"business id too long", old.PublicKey(), next.PublicKey(), strings.Repeat("b", 256), sig, ErrMalformed},
	} {
		if err := VerifyEndorsement(tc.old, tc.biz, tc.next, tc.sig); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := EndorseSigningKey(old, biz, next.PublicKey()[:31]); !errors.Is(err, ErrMalformed) {
		t.Errorf("endorsing a short key: %v, want ErrMalformed", err)
	}
}

// TestEndorsementIsNotAnEnvelopeSignature: the domain label keeps the two kinds of
// signature apart; neither message can be read as the other.
func TestEndorsementIsNotAnEnvelopeSignature(t *testing.T) {
	t.Parallel()
	next, _ := GenerateSigningKey()
	msg, err := endorsedMessage("biz_acme", next.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	var h [32]byte
	env := signedMessage(&h, nil)
	if strings.HasPrefix(string(msg), signatureLabel+"\x00") || strings.HasPrefix(string(env), endorsementLabel+"\x00") {
		t.Fatal("an endorsement and an envelope signature share a label")
	}
}
