package client_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	"github.com/heraldhq/herald/internal/keys"
)

// signingBusiness creates a business, registers signer as its first signing key, and
// returns the Business and its API key, to make more Businesses of it with other keys.
func (g *gateway) signingBusiness(signer *e2e.SigningKey) (*client.Business, string) {
	g.t.Helper()
	id, apiKey := g.newBusiness(high)
	b := client.NewBusiness(g.conn, id, apiKey, signer)
	if err := b.RegisterSigningKey(g.t.Context()); err != nil {
		g.t.Fatal(err)
	}
	return b, apiKey
}

func newSigningKey(t testing.TB) *e2e.SigningKey {
	t.Helper()
	k, err := e2e.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sendText sends text to phone as a receipt and returns the message id.
func sendText(t testing.TB, b *client.Business, phone, text string) string {
	t.Helper()
	s, err := b.Send(t.Context(), phone, e2e.Transactional, e2e.Receipt, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return s.MessageID
}

// readAll receives n messages on d, failing on any error, acks them and returns their
// texts in order.
func readAll(t testing.TB, d *client.Device, n int) []string {
	t.Helper()
	var texts, ids []string
	for _, m := range receiveMessages(t, d, n) {
		texts = append(texts, string(m.Body))
		ids = append(ids, m.ID)
	}
	if err := d.Ack(t.Context(), ids...); err != nil {
		t.Fatal(err)
	}
	return texts
}

// keyChange receives one item on d and fails unless it is a *KeyChangedError offering
// offered for message id.
func keyChange(t testing.TB, d *client.Device, id string, offered *e2e.SigningKey) {
	t.Helper()
	r := receive(t, d, 1)[0]
	var kc *client.KeyChangedError
	if r.msg != nil || !errors.As(r.err, &kc) || kc.MessageID != id || !bytes.Equal(kc.Offered, offered.PublicKey()) {
		t.Fatalf("message %s under an unvouched key: %v, %v; want a *KeyChangedError offering %s", id, r.msg, r.err,
			e2e.KeyID(offered.PublicKey()))
	}
}

// TestRotationFollowedSilently: a business rotates its key twice, each new key endorsed
// by the one before, while its customers' devices are away. Every device that pinned
// the first key opens what was queued under it and what came under each new key,
// without a key change, and pins the newest; a device restored from its saved state
// still opens what the old key signs.
func TestRotationFollowedSilently(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	first := newSigningKey(t)
	b, apiKey := g.signingBusiness(first)
	phone := g.device(nil, alice, e2e.X25519)
	tablet := g.device(nil, alice, e2e.MLKEM768X25519)
	sendText(t, b, alice, "hello")
	for _, d := range []*client.Device{phone, tablet} {
		readAll(t, d, 1)
		if !bytes.Equal(d.PinnedKey(b.ID()), first.PublicKey()) {
			t.Fatal("the first key is not pinned")
		}
	}

	sendText(t, b, alice, "queued under the first key")
	second, third := newSigningKey(t), newSigningKey(t)
	if err := b.RotateSigningKey(t.Context(), second); err != nil {
		t.Fatal(err)
	}
	if b.SigningKeyID() != e2e.KeyID(second.PublicKey()) {
		t.Fatal("the Business does not sign with the key it rotated to")
	}
	sendText(t, b, alice, "under the second key")
	if err := b.RotateSigningKey(t.Context(), third); err != nil {
		t.Fatal(err)
	}
	sendText(t, b, alice, "under the third key")

	want := []string{"queued under the first key", "under the second key", "under the third key"}
	for name, d := range map[string]*client.Device{"phone": phone, "tablet": tablet} {
		if got := readAll(t, d, 3); !equal(got, want) {
			t.Fatalf("%s received %q, want %q", name, got, want)
		}
		if !bytes.Equal(d.PinnedKey(b.ID()), third.PublicKey()) {
			t.Fatalf("%s pins %x, want the third key", name, d.PinnedKey(b.ID()))
		}
	}

	// The first key is not retired: a machine that still signs with it is delivered
	// with it, and the device, restored from its state, still trusts it.
	state, err := phone.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := client.LoadDevice(g.conn, state)
	if err != nil {
		t.Fatal(err)
	}
	oldMachine := client.NewBusiness(g.conn, b.ID(), apiKey, first)
	sendText(t, oldMachine, alice, "from a machine with the first key")
	if got := readAll(t, restored, 1); got[0] != "from a machine with the first key" {
		t.Fatalf("restored device received %q", got)
	}
	// But not for ever: past RetiredKeyRetention the first key is a stranger again.
	late, err := client.LoadDevice(g.conn, state, client.WithClock(func() time.Time {
		return time.Now().Add(client.RetiredKeyRetention + time.Hour)
	}))
	if err != nil {
		t.Fatal(err)
	}
	keyChange(t, late, sendText(t, oldMachine, alice, "long after"), first)
}

// TestOperatorReplacementIsAKeyChange: a business that lost its key gets a new one
// from the operator; every device that trusted an earlier key, whether it pinned the
// first or followed a rotation, reports a key change, and opens the message only once
// its person trusts the new key.
func TestOperatorReplacementIsAKeyChange(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	first := newSigningKey(t)
	b, apiKey := g.signingBusiness(first)
	phone := g.device(nil, alice, e2e.X25519)
	tablet := g.device(nil, alice, e2e.X25519)
	bobs := g.device(nil, bob, e2e.X25519)
	sendText(t, b, alice, "hello alice")
	sendText(t, b, bob, "hello bob")
	readAll(t, phone, 1)
	readAll(t, tablet, 1)
	readAll(t, bobs, 1)
	if err := b.RotateSigningKey(t.Context(), newSigningKey(t)); err != nil {
		t.Fatal(err)
	}
	sendText(t, b, bob, "after a rotation")
	readAll(t, bobs, 1) // bob's device follows the rotation and trusts both keys

	replacement := newSigningKey(t)
	g.replaceSigningKey(b.ID(), replacement)
	replaced := client.NewBusiness(g.conn, b.ID(), apiKey, replacement)
	toAlice := sendText(t, replaced, alice, "under the replacement")
	toBob := sendText(t, replaced, bob, "under the replacement")
	keyChange(t, phone, toAlice, replacement)
	keyChange(t, tablet, toAlice, replacement)
	keyChange(t, bobs, toBob, replacement)

	if err := phone.TrustKey(b.ID(), replacement.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, phone, 1); got[0] != "under the replacement" {
		t.Fatalf("after TrustKey received %q", got)
	}
}

// TestInjectedKeysAreNeverTrusted: whoever can write to Redis (a gateway, an operator
// of the store) can put any key into a business's record, with any chain; a device
// that trusts the business's key never trusts such a key without its person: each
// message signed with it is a key change, and the pin stays.
func TestInjectedKeysAreNeverTrusted(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	ctx := t.Context()
	stranger := newSigningKey(t)
	id := func(k *e2e.SigningKey) string { return e2e.KeyID(k.PublicKey()) }
	endorse := func(by, next *e2e.SigningKey, biz string) []byte {
		sig, err := e2e.EndorseSigningKey(by, biz, next.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	first := func(k *e2e.SigningKey) keys.SigningKeyRecord {
		return keys.SigningKeyRecord{PublicKey: k.PublicKey(), Origin: keys.SigningKeyFirst, State: keys.SigningKeyInUse}
	}
	endorsed := func(k, by *e2e.SigningKey, sig []byte) keys.SigningKeyRecord {
		return keys.SigningKeyRecord{PublicKey: k.PublicKey(), Origin: keys.SigningKeyEndorsed, EndorsedBy: id(by),
			Endorsement: sig, State: keys.SigningKeyInUse}
	}
	for _, tc := range []struct {
		name string
		// inject is what is written into the record of business biz, whose key is
		// pinned, to make devices trust evil; the current key becomes evil's id.
		inject func(biz string, pinned, evil *e2e.SigningKey) map[string]keys.SigningKeyRecord
	}{
		{"a key of its own, as the first", func(_ string, _, evil *e2e.SigningKey) map[string]keys.SigningKeyRecord {
			return map[string]keys.SigningKeyRecord{id(evil): first(evil)}
		}},
		{"a key of its own, as the operator's replacement", func(_ string, _, evil *e2e.SigningKey) map[string]keys.SigningKeyRecord {
			r := first(evil)
			r.Origin = keys.SigningKeyReplaced
			return map[string]keys.SigningKeyRecord{id(evil): r}
		}},
		{"the pinned key's record overwritten", func(_ string, pinned, evil *e2e.SigningKey) map[string]keys.SigningKeyRecord {
			return map[string]keys.SigningKeyRecord{id(pinned): first(evil), id(evil): first(evil)}
		}},
		{"endorsed by the pinned key, signed by itself", func(biz string, pinned, evil *e2e.SigningKey) map[string]keys.SigningKeyRecord {
			return map[string]keys.SigningKeyRecord{id(evil): endorsed(evil, pinned, endorse(evil, evil, biz))}
		}},
		{"endorsed by the pinned key, signature flipped", func(biz string, pinned, evil *e2e.SigningKey) map[string]keys.SigningKeyRecord {
			sig := endorse(pinned, evil, biz)
			sig[3] ^= 1
			return map[string]keys.SigningKeyRecord{id(evil): endorsed(evil, pinned, sig)}
		}},
		{"endorsed by the pinned key for another business", func(_ string, pinned, evil *e2e.SigningKey) map[string]keys.SigningKeyRecord {
			return map[string]keys.SigningKeyRecord{id(evil): endorsed(evil, pinned, endorse(pinned, evil, "biz_other"))}
		}},
		{"the pinned key's endorsement of another key, replayed", func(biz string, pinned, evil *e2e.SigningKey) map[string]keys.SigningKeyRecord {
			return map[string]keys.SigningKeyRecord{id(evil): endorsed(evil, pinned, endorse(pinned, stranger, biz))}
		}},
		{"endorsed by a key not of the business", func(biz string, _, evil *e2e.SigningKey) map[string]keys.SigningKeyRecord {
			return map[string]keys.SigningKeyRecord{id(stranger): first(stranger), id(evil): endorsed(evil, stranger, endorse(stranger, evil, biz))}
		}},
	} {
		pinned, evil := newSigningKey(t), newSigningKey(t)
		b, apiKey := g.signingBusiness(pinned)
		phone := g.device(nil, alice, e2e.X25519)
		sendText(t, b, alice, "hello")
		readAll(t, phone, 1)

		r := keys.BusinessRecord{CurrentSigningKey: id(evil), SigningKeys: tc.inject(b.ID(), pinned, evil)}
		if err := g.rdb.HSet(ctx, keys.Business(b.ID()).Record(), r.Fields()...).Err(); err != nil {
			t.Fatal(err)
		}
		g.restart() // no gateway holds the record in its cache any more

		msg := sendText(t, client.NewBusiness(g.conn, b.ID(), apiKey, evil), alice, "from the injected key")
		r0 := receive(t, phone, 1)[0]
		var kc *client.KeyChangedError
		if r0.msg != nil || !errors.As(r0.err, &kc) || kc.MessageID != msg {
			t.Errorf("%s: %v, %v; want a key change", tc.name, r0.msg, r0.err)
		}
		if !bytes.Equal(phone.PinnedKey(b.ID()), pinned.PublicKey()) {
			t.Errorf("%s: the pin moved", tc.name)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
