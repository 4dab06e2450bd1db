package main

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"testing"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

func TestSealOpenWithANewDeviceKey(t *testing.T) {
	alg, private, public, err := newDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	if alg != heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_MLKEM768_X25519 {
		t.Errorf("new devices get %s", alg)
	}
	// RegisterDevice takes 32 to 4096 bytes.
	if len(public) < 32 || len(public) > 4096 {
		t.Errorf("public key is %d bytes", len(public))
	}
	if bytes.Equal(private, public) || bytes.Contains(public, private) {
		t.Error("the public key contains the private key")
	}

	msg := []byte("Your order #1234 has shipped.")
	ct, err := seal(alg, public, msg)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, msg) {
		t.Error("ciphertext contains the plain text")
	}
	got, err := open(alg, private, ct)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Errorf("opened %q, want %q", got, msg)
	}

	// Single-shot sealing is randomised: the same text twice looks different.
	ct2, _ := seal(alg, public, msg)
	if bytes.Equal(ct, ct2) {
		t.Error("two seals of the same text are equal")
	}
}

func TestSealOpenX25519(t *testing.T) {
	// Devices registered by other clients may use the classic KEM; send must seal
	// to them too.
	k, err := hpke.DHKEM(ecdh.X25519()).GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	private, err := k.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	alg := heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_X25519
	ct, err := seal(alg, k.PublicKey().Bytes(), []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := open(alg, private, ct); err != nil || string(got) != "hi" {
		t.Errorf("open = %q, %v", got, err)
	}
}

func TestOpenRejects(t *testing.T) {
	alg, private, public, err := newDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	_, otherPrivate, _, err := newDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	ct, err := seal(alg, public, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(ct)
	tampered[len(tampered)-1] ^= 1
	// The same text sealed with another info, as the e2e format will be.
	kem, _ := kemFor(alg)
	pk, _ := kem.NewPublicKey(public)
	otherFormat, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte("herald e2e v1"), []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		private    []byte
		ciphertext []byte
	}{
		{"another device's key", otherPrivate, ct},
		{"a tampered ciphertext", private, tampered},
		{"a truncated ciphertext", private, ct[:len(ct)/2]},
		{"another format's info", private, otherFormat},
		{"an empty ciphertext", private, nil},
	}
	for _, tt := range tests {
		if got, err := open(alg, tt.private, tt.ciphertext); err == nil {
			t.Errorf("%s: opened to %q", tt.name, got)
		}
	}
}

func TestSealRejectsUnusableKeys(t *testing.T) {
	_, _, public, err := newDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seal(heraldv1.KeyAlgorithm_KEY_ALGORITHM_UNSPECIFIED, public, []byte("x")); err == nil {
		t.Error("sealed to an unspecified algorithm")
	}
	if _, err := seal(heraldv1.KeyAlgorithm(99), public, []byte("x")); err == nil {
		t.Error("sealed to an unknown algorithm")
	}
	if _, err := seal(newDeviceAlgorithm, public[:100], []byte("x")); err == nil {
		t.Error("sealed to a truncated key")
	}
	if _, err := seal(heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_X25519, public, []byte("x")); err == nil {
		t.Error("sealed to a hybrid key as if it were X25519")
	}
}
