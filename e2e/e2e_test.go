package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"
)

// household is a business and one person's devices: a phone with a post-quantum key, a
// laptop with an X25519 key, and a watch that is never sealed for.
type household struct {
	business *SigningKey
	header   Header
	keys     map[string]*DeviceKey
}

func newHousehold(t testing.TB) *household {
	t.Helper()
	business, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	hh := &household{
		business: business,
		header: Header{
			BusinessID:      "biz_pizzeria",
			Category:        Transactional,
			Kind:            Receipt,
			ClientMessageID: "order-1234:receipt",
			SentTime:        time.UnixMilli(1_767_225_600_123),
		},
		keys: map[string]*DeviceKey{},
	}
	for id, alg := range map[string]Algorithm{"phone": MLKEM768X25519, "laptop": X25519, "watch": MLKEM768X25519} {
		k, err := GenerateDeviceKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		hh.keys[id] = k
	}
	return hh
}

func (hh *household) recipient(id string) Recipient {
	k := hh.keys[id]
	return Recipient{DeviceID: id, PublicKey: k.PublicKey(), Algorithm: k.Algorithm()}
}

// seal seals plaintext for the phone and the laptop.
func (hh *household) seal(t testing.TB, plaintext string) *Sealed {
	t.Helper()
	s, err := Seal(hh.business, hh.header, []byte(plaintext), []Recipient{hh.recipient("phone"), hh.recipient("laptop")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (hh *household) open(id string, expect Header, envelope []byte) (*Message, error) {
	return Open(hh.keys[id], id, expect, hh.business.PublicKey(), envelope)
}

func envelope(t testing.TB, s *Sealed, id string) []byte {
	t.Helper()
	e, ok := s.Envelope(id)
	if !ok {
		t.Fatalf("no envelope for %q", id)
	}
	return e
}

func TestRoundTripToEachDevice(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	const text = "Thanks for your order: 1 margherita, 12.50 EUR."
	s := hh.seal(t, text)
	if len(s.Wraps) != 2 {
		t.Fatalf("sealed %d wraps, want 2", len(s.Wraps))
	}
	for _, id := range []string{"phone", "laptop"} {
		t.Run(hh.keys[id].Algorithm().String(), func(t *testing.T) {
			env := envelope(t, s, id)
			if !bytes.Equal(env, JoinEnvelope(s.Body, s.Wraps[id])) {
				t.Fatal("Envelope differs from JoinEnvelope of the parts")
			}
			m, err := hh.open(id, hh.header, env)
			if err != nil {
				t.Fatal(err)
			}
			if string(m.Body) != text {
				t.Errorf("body = %q, want %q", m.Body, text)
			}
			if m.Header != hh.header {
				t.Errorf("header = %+v, want %+v", m.Header, hh.header)
			}
			wantWrap := wrapSize(hh.keys[id].Algorithm(), id)
			if len(s.Wraps[id]) != wantWrap {
				t.Errorf("wrap is %d bytes, want %d", len(s.Wraps[id]), wantWrap)
			}
		})
	}
}

func TestOpenWithoutSentTimeComparesTheRest(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "hi")
	expect := hh.header
	expect.SentTime = time.Time{}
	m, err := hh.open("phone", expect, envelope(t, s, "phone"))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Header.SentTime.Equal(hh.header.SentTime) {
		t.Errorf("sealed sent time = %v, want %v", m.Header.SentTime, hh.header.SentTime)
	}
	expect.Kind = Reservation
	if _, err := hh.open("phone", expect, envelope(t, s, "phone")); !errors.Is(err, ErrHeaderMismatch) {
		t.Errorf("err = %v, want ErrHeaderMismatch", err)
	}
}

func TestSentTimeIsKeptToTheMillisecond(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	hh.header.SentTime = time.Unix(1_767_225_600, 123_456_789)
	s := hh.seal(t, "hi")
	m, err := hh.open("laptop", hh.header, envelope(t, s, "laptop"))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.SentTime.UnixMilli(); got != 1_767_225_600_123 {
		t.Errorf("sent time = %d ms, want 1767225600123", got)
	}
}

func TestNonRecipientCannotOpenAnyWrap(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "for the phone and the laptop only")
	for id := range s.Wraps {
		env := envelope(t, s, id)
		// The watch, as itself and pretending to be the device the wrap is for.
		for _, claimed := range []string{"watch", id} {
			m, err := Open(hh.keys["watch"], claimed, hh.header, hh.business.PublicKey(), env)
			if !errors.Is(err, ErrNotForThisDevice) || m != nil {
				t.Errorf("watch opening %s's wrap as %q: %v, %v; want ErrNotForThisDevice", id, claimed, m, err)
			}
		}
	}
}

func TestDeliveredHeaderMustMatchSealed(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "a receipt")
	env := envelope(t, s, "phone")
	for _, tc := range []struct {
		field  string
		change func(*Header)
	}{
		{"business_id", func(h *Header) { h.BusinessID = "biz_competitor" }},
		{"business_id", func(h *Header) { h.BusinessID = "" }},
		{"category", func(h *Header) { h.Category = Marketing }},
		{"kind", func(h *Header) { h.Kind = Offer }},
		{"client_message_id", func(h *Header) { h.ClientMessageID = "order-1235:receipt" }},
		{"sent_time", func(h *Header) { h.SentTime = h.SentTime.Add(time.Millisecond) }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			expect := hh.header
			tc.change(&expect)
			m, err := hh.open("phone", expect, env)
			var mismatch *HeaderMismatchError
			if !errors.Is(err, ErrHeaderMismatch) || !errors.As(err, &mismatch) || m != nil {
				t.Fatalf("Open = %v, %v; want a *HeaderMismatchError", m, err)
			}
			if mismatch.Field != tc.field {
				t.Errorf("field = %q, want %q (%v)", mismatch.Field, tc.field, err)
			}
		})
	}
}

// bodyOffsets returns where each header field of hh.header starts inside an envelope.
func bodyOffsets(h Header) map[string]int {
	biz := envelopeHead + 1 + 1 // envelope head, body version, business id length
	cat := biz + len(h.BusinessID)
	cmid := cat + 2 + 1
	sent := cmid + len(h.ClientMessageID)
	commitment := sent + 8
	return map[string]int{
		"business_id":       biz,
		"category":          cat,
		"kind":              cat + 1,
		"client_message_id": cmid,
		"sent_time":         sent + 7,
		"commitment":        commitment,
		"nonce":             commitment + commitmentSize,
		"ciphertext":        commitment + commitmentSize + 12,
	}
}

func TestTamperedEnvelopeIsRefused(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "a receipt")
	for _, id := range []string{"phone", "laptop"} {
		env := envelope(t, s, id)
		wrapAt := envelopeHead + len(s.Body)
		alg := hh.keys[id].Algorithm()
		offsets := bodyOffsets(hh.header)
		cases := map[string]struct {
			at   int
			want error
		}{
			"wrap device id":   {wrapAt + 3, ErrNotForThisDevice},
			"wrap key id":      {wrapAt + 3 + len(id), ErrNotForThisDevice},
			"wrap hpke enc":    {wrapAt + 3 + len(id) + 16, ErrBadSignature},
			"wrap content key": {wrapAt + 3 + len(id) + 16 + alg.encSize(), ErrBadSignature},
			"wrap signature":   {len(env) - 1, ErrBadSignature},
		}
		for field, at := range offsets {
			cases["body "+field] = struct {
				at   int
				want error
			}{at, ErrBadSignature}
		}
		for name, tc := range cases {
			t.Run(alg.String()+"/"+name, func(t *testing.T) {
				bad := bytes.Clone(env)
				bad[tc.at] ^= 0x03 // category transactional → marketing, kind receipt → reservation
				m, err := hh.open(id, hh.header, bad)
				if !errors.Is(err, tc.want) || m != nil {
					t.Errorf("Open = %v, %v; want %v", m, err, tc.want)
				}
			})
		}
	}
}

// TestEveryByteIsProtected flips the lowest bit of each byte of an envelope in turn:
// every change is refused, none panics, and none yields a plaintext.
func TestEveryByteIsProtected(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "every byte counts")
	for _, id := range []string{"phone", "laptop"} {
		env := envelope(t, s, id)
		for i := range env {
			bad := bytes.Clone(env)
			bad[i] ^= 0x01
			m, err := hh.open(id, hh.header, bad)
			if err == nil || m != nil {
				t.Fatalf("%s: flipping byte %d was accepted", id, i)
			}
			if !isTyped(err) {
				t.Fatalf("%s: flipping byte %d: untyped error %v", id, i, err)
			}
		}
	}
}

// isTyped reports whether err is one of the errors Open documents.
func isTyped(err error) bool {
	for _, target := range []error{ErrMalformed, ErrUnsupportedVersion, ErrUnsupportedAlgorithm, ErrNotForThisDevice, ErrBadSignature, ErrHeaderMismatch} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func TestMarketingCannotPassAsTransactional(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	hh.header.Category, hh.header.Kind = Marketing, Offer
	s := hh.seal(t, "20% off all pizzas tonight")
	env := envelope(t, s, "phone")
	asReceipt := hh.header
	asReceipt.Category, asReceipt.Kind = Transactional, Receipt

	// Relabelled in the delivery only.
	if _, err := hh.open("phone", asReceipt, env); !errors.Is(err, ErrHeaderMismatch) {
		t.Errorf("relabelled delivery: err = %v, want ErrHeaderMismatch", err)
	}
	// Relabelled in the sealed bytes too.
	bad := bytes.Clone(env)
	at := bodyOffsets(hh.header)
	bad[at["category"]], bad[at["kind"]] = byte(Transactional), byte(Receipt)
	if _, err := hh.open("phone", asReceipt, bad); !errors.Is(err, ErrBadSignature) {
		t.Errorf("relabelled envelope: err = %v, want ErrBadSignature", err)
	}
}

func TestBodyFromAnotherMessageIsRefused(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	genuine := hh.seal(t, "your table is booked for 8 pm")
	other := hh.seal(t, "your table is cancelled") // same header, same business
	env := JoinEnvelope(other.Body, genuine.Wraps["phone"])
	if m, err := hh.open("phone", hh.header, env); !errors.Is(err, ErrBadSignature) || m != nil {
		t.Errorf("Open = %v, %v; want ErrBadSignature", m, err)
	}
}

func TestWrapMovedToAnotherDeviceIsRefused(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "for the phone")
	phoneWrap := s.Wraps["phone"]

	t.Run("as is", func(t *testing.T) {
		// Delivered to the watch (same algorithm) under the watch's id.
		_, err := Open(hh.keys["watch"], "watch", hh.header, hh.business.PublicKey(), JoinEnvelope(s.Body, phoneWrap))
		if !errors.Is(err, ErrNotForThisDevice) {
			t.Errorf("err = %v, want ErrNotForThisDevice", err)
		}
	})
	t.Run("relabelled", func(t *testing.T) {
		// The gateway rewrites the clear device id and key id to the watch's.
		w := relabel(t, phoneWrap, "watch", hh.keys["watch"].id)
		_, err := Open(hh.keys["watch"], "watch", hh.header, hh.business.PublicKey(), JoinEnvelope(s.Body, w))
		if !errors.Is(err, ErrBadSignature) {
			t.Errorf("err = %v, want ErrBadSignature", err)
		}
	})
	t.Run("relabelled and re-signed by the business", func(t *testing.T) {
		// Even the business cannot move a wrap: its HPKE info names the phone.
		w := relabel(t, phoneWrap, "watch", hh.keys["watch"].id)
		w = resign(hh.business, s.Body, w)
		_, err := Open(hh.keys["watch"], "watch", hh.header, hh.business.PublicKey(), JoinEnvelope(s.Body, w))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("err = %v, want ErrMalformed", err)
		}
	})
}

// relabel rewrites a wrap's device id and key id, keeping the rest.
func relabel(t *testing.T, w []byte, deviceID string, id keyID) []byte {
	t.Helper()
	parsed, err := parseWrap(w)
	if err != nil {
		t.Fatal(err)
	}
	out := []byte{Version, byte(parsed.alg)}
	out = appendString(out, deviceID)
	out = append(out, id[:]...)
	out = append(out, parsed.sealed...)
	return append(out, parsed.sig...)
}

// resign replaces a wrap's signature with a valid one by business.
func resign(business *SigningKey, body, w []byte) []byte {
	bodyHash := sha256.Sum256(body)
	unsigned := w[:len(w)-signatureSize]
	return append(bytes.Clone(unsigned), ed25519.Sign(business.priv, signedMessage(&bodyHash, unsigned))...)
}

func TestForgedMessageIsRefused(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	forger, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	// Well-formed HPKE to the phone's real key, claiming the business's id.
	forged, err := Seal(forger, hh.header, []byte("your account is locked, log in at evil.example"), []Recipient{hh.recipient("phone")})
	if err != nil {
		t.Fatal(err)
	}
	m, err := hh.open("phone", hh.header, envelope(t, forged, "phone"))
	if !errors.Is(err, ErrBadSignature) || m != nil {
		t.Errorf("Open = %v, %v; want ErrBadSignature", m, err)
	}
	if _, err := Open(hh.keys["phone"], "phone", hh.header, ed25519.PublicKey{1, 2, 3}, envelope(t, forged, "phone")); !errors.Is(err, ErrBadSignature) {
		t.Errorf("short business key: err = %v, want ErrBadSignature", err)
	}
}

// TestForwardedContentKeyIsRefused: the laptop learns the content key and wraps it to
// the watch, which was never a recipient. The body decrypts with that key, but the
// business did not sign a wrap for the watch.
func TestForwardedContentKeyIsRefused(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "a receipt")
	laptop, err := parseWrap(s.Wraps["laptop"])
	if err != nil {
		t.Fatal(err)
	}
	bodyHash := sha256.Sum256(s.Body)
	contentKey, err := hpke.Open(hh.keys["laptop"].priv, hpkeKDF, hpkeAEAD, wrapInfo(&bodyHash, "laptop"), laptop.sealed)
	if err != nil {
		t.Fatal(err)
	}
	forger, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	w := forgeWrap(t, hh.keys["watch"], "watch", s.Body, contentKey, forger)
	if _, err := Open(hh.keys["watch"], "watch", hh.header, hh.business.PublicKey(), JoinEnvelope(s.Body, w)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("err = %v, want ErrBadSignature", err)
	}
}

// forgeWrap builds a wrap of contentKey for dev, signed by signer.
func forgeWrap(t *testing.T, dev *DeviceKey, deviceID string, body, contentKey []byte, signer *SigningKey) []byte {
	t.Helper()
	bodyHash := sha256.Sum256(body)
	w := []byte{Version, byte(dev.alg)}
	w = appendString(w, deviceID)
	w = append(w, dev.id[:]...)
	pub, err := dev.priv.KEM().NewPublicKey(dev.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := hpke.Seal(pub, hpkeKDF, hpkeAEAD, wrapInfo(&bodyHash, deviceID), contentKey)
	if err != nil {
		t.Fatal(err)
	}
	w = append(w, sealed...)
	return append(w, ed25519.Sign(signer.priv, signedMessage(&bodyHash, w))...)
}

// TestBodyCommitsToItsKey: a business that signs a wrap of some other key for the same
// body is caught by the key commitment before any decryption of the body is trusted.
func TestBodyCommitsToItsKey(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "a receipt")
	otherKey := make([]byte, contentKeySize)
	rand.Read(otherKey)
	w := forgeWrap(t, hh.keys["phone"], "phone", s.Body, otherKey, hh.business)
	_, err := hh.open("phone", hh.header, JoinEnvelope(s.Body, w))
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "commitment") {
		t.Errorf("err = %v, want ErrMalformed about the commitment", err)
	}
}

func TestInspectReadsRoutingWithoutKeys(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "a receipt")
	h, id, err := Inspect(envelope(t, s, "laptop"))
	if err != nil {
		t.Fatal(err)
	}
	if h != hh.header || id != "laptop" {
		t.Errorf("Inspect = %+v, %q; want %+v, laptop", h, id, hh.header)
	}
}

func TestSealRefuses(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	phone := hh.recipient("phone")
	for _, tc := range []struct {
		name    string
		change  func(*Header, *[]Recipient, **SigningKey)
		wantErr error
	}{
		{"no business id", func(h *Header, _ *[]Recipient, _ **SigningKey) { h.BusinessID = "" }, ErrInvalidHeader},
		{"long business id", func(h *Header, _ *[]Recipient, _ **SigningKey) { h.BusinessID = strings.Repeat("b", 256) }, ErrInvalidHeader},
		{"no category", func(h *Header, _ *[]Recipient, _ **SigningKey) { h.Category = 0 }, ErrInvalidHeader},
		{"no kind", func(h *Header, _ *[]Recipient, _ **SigningKey) { h.Kind = 0 }, ErrInvalidHeader},
		{"no client message id", func(h *Header, _ *[]Recipient, _ **SigningKey) { h.ClientMessageID = "" }, ErrInvalidHeader},
		{"no sent time", func(h *Header, _ *[]Recipient, _ **SigningKey) { h.SentTime = time.Time{} }, ErrInvalidHeader},
		{"unknown algorithm", func(_ *Header, r *[]Recipient, _ **SigningKey) { (*r)[0].Algorithm = 9 }, ErrUnsupportedAlgorithm},
		{"key of the other algorithm", func(_ *Header, r *[]Recipient, _ **SigningKey) { (*r)[0].Algorithm = X25519 }, nil},
		{"truncated key", func(_ *Header, r *[]Recipient, _ **SigningKey) { (*r)[0].PublicKey = (*r)[0].PublicKey[:100] }, nil},
		{"no device id", func(_ *Header, r *[]Recipient, _ **SigningKey) { (*r)[0].DeviceID = "" }, nil},
		{"device twice", func(_ *Header, r *[]Recipient, _ **SigningKey) { *r = append(*r, phone) }, nil},
		{"no devices", func(_ *Header, r *[]Recipient, _ **SigningKey) { *r = nil }, nil},
		{"no signing key", func(_ *Header, _ *[]Recipient, k **SigningKey) { *k = nil }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, devices, sender := hh.header, []Recipient{phone}, hh.business
			tc.change(&h, &devices, &sender)
			s, err := Seal(sender, h, []byte("x"), devices)
			if err == nil || s != nil {
				t.Fatalf("Seal = %v, %v; want an error", s, err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestEmptyBodyRoundTrips(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "")
	m, err := hh.open("phone", hh.header, envelope(t, s, "phone"))
	if err != nil || len(m.Body) != 0 {
		t.Fatalf("Open = %v, %v; want an empty body", m, err)
	}
}

// TestLargestEnvelopeFitsTheAPI pins the size the package doc promises: 63,442 bytes
// of plaintext, with every field at its longest, make a 64 KiB envelope.
func TestLargestEnvelopeFitsTheAPI(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	hh.header.BusinessID = strings.Repeat("b", maxField)
	hh.header.ClientMessageID = strings.Repeat("c", maxField)
	id := strings.Repeat("d", maxField)
	k := hh.keys["phone"]
	s, err := Seal(hh.business, hh.header, make([]byte, 63_442), []Recipient{{DeviceID: id, PublicKey: k.PublicKey(), Algorithm: k.Algorithm()}})
	if err != nil {
		t.Fatal(err)
	}
	env := envelope(t, s, id)
	if len(env) != 64<<10 {
		t.Errorf("envelope is %d bytes, want %d", len(env), 64<<10)
	}
	if _, err := Open(k, id, hh.header, hh.business.PublicKey(), env); err != nil {
		t.Fatal(err)
	}
}

// TestKeysAreSafeForConcurrentUse seals and opens with shared keys from many
// goroutines; run it with -race.
func TestKeysAreSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	hh := newHousehold(t)
	s := hh.seal(t, "shared")
	env := envelope(t, s, "phone")
	errs := make(chan error, 16)
	for range cap(errs) {
		go func() {
			if _, err := hh.open("phone", hh.header, env); err != nil {
				errs <- err
				return
			}
			_, err := Seal(hh.business, hh.header, []byte("x"), []Recipient{hh.recipient("phone")})
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
