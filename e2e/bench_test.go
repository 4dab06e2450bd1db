package e2e

import (
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"
)

var benchHeader = Header{
	BusinessID:      "biz_01hzy8k4m2q7",
	Category:        Transactional,
	Kind:            Receipt,
	ClientMessageID: "order-1234:receipt",
	SentTime:        time.UnixMilli(1_767_225_600_123),
}

// benchDevices returns n devices of alg, their keys, and a business key.
func benchDevices(b *testing.B, alg Algorithm, n int) ([]Recipient, []*DeviceKey, *SigningKey) {
	b.Helper()
	business, err := GenerateSigningKey()
	if err != nil {
		b.Fatal(err)
	}
	recipients := make([]Recipient, n)
	keys := make([]*DeviceKey, n)
	for i := range n {
		k, err := GenerateDeviceKey(alg)
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = k
		recipients[i] = Recipient{DeviceID: fmt.Sprintf("dev_%022d", i), PublicKey: k.PublicKey(), Algorithm: alg}
	}
	return recipients, keys, business
}

var benchAlgorithms = []Algorithm{MLKEM768X25519, X25519}

// BenchmarkSeal seals a 1 KiB message, as a business SDK does per recipient.
func BenchmarkSeal(b *testing.B) {
	body := make([]byte, 1024)
	for _, alg := range benchAlgorithms {
		for _, n := range []int{1, 3} {
			b.Run(fmt.Sprintf("%v/devices=%d", alg, n), func(b *testing.B) {
				recipients, _, business := benchDevices(b, alg, n)
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					if _, err := Seal(business, benchHeader, body, recipients); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkOpen opens a 1 KiB message, as a device does per delivery.
func BenchmarkOpen(b *testing.B) {
	body := make([]byte, 1024)
	for _, alg := range benchAlgorithms {
		b.Run(alg.String(), func(b *testing.B) {
			recipients, keys, business := benchDevices(b, alg, 1)
			s, err := Seal(business, benchHeader, body, recipients)
			if err != nil {
				b.Fatal(err)
			}
			id := recipients[0].DeviceID
			env, _ := s.Envelope(id)
			pub := business.PublicKey()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := Open(keys[0], id, benchHeader, pub, env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBroadcast seals one 4 KiB body for 1000 devices, on one goroutine.
func BenchmarkBroadcast(b *testing.B) {
	const devices = 1000
	body := make([]byte, 4096)
	for _, alg := range benchAlgorithms {
		b.Run(fmt.Sprintf("%v/devices=%d", alg, devices), func(b *testing.B) {
			recipients, _, business := benchDevices(b, alg, devices)
			var s *Sealed
			for b.Loop() {
				var err error
				if s, err = Seal(business, benchHeader, body, recipients); err != nil {
					b.Fatal(err)
				}
			}
			wrapBytes := 0
			for _, w := range s.Wraps {
				wrapBytes += len(w)
			}
			b.ReportMetric(float64(devices*b.N)/b.Elapsed().Seconds(), "wraps/s")
			b.ReportMetric(float64(wrapBytes)/devices, "B/wrap")
			b.ReportMetric(float64(len(s.Body)), "B/body")
		})
	}
}

// BenchmarkPerDeviceCost splits a wrap's cost between HPKE and the per-device Ed25519
// signature, the price of signing per device rather than once per message.
func BenchmarkPerDeviceCost(b *testing.B) {
	contentKey := make([]byte, contentKeySize)
	bodyHash := sha256.Sum256([]byte("body"))
	for _, alg := range benchAlgorithms {
		b.Run("hpke-seal/"+alg.String(), func(b *testing.B) {
			recipients, _, _ := benchDevices(b, alg, 1)
			kem, _ := alg.kem()
			info := wrapInfo(&bodyHash, recipients[0].DeviceID)
			for b.Loop() {
				pk, err := kem.NewPublicKey(recipients[0].PublicKey)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := hpke.Seal(pk, hpkeKDF, hpkeAEAD, info, contentKey); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	business, _ := GenerateSigningKey()
	unsigned := make([]byte, wrapSize(MLKEM768X25519, "dev_0000000000000000000000")-signatureSize)
	b.Run("ed25519-sign", func(b *testing.B) {
		for b.Loop() {
			ed25519.Sign(business.priv, signedMessage(&bodyHash, unsigned))
		}
	})
	sig := ed25519.Sign(business.priv, signedMessage(&bodyHash, unsigned))
	pub := business.PublicKey()
	b.Run("ed25519-verify", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub, signedMessage(&bodyHash, unsigned), sig) {
				b.Fatal("bad signature")
			}
		}
	})
}
