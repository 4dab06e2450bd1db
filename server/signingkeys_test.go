package server

import (
	"context"
	"errors"
	"testing"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/grpc/codes"
)

// endorsed is a SetSigningKeyRequest for next, endorsed by by for business biz.
func endorsed(t *testing.T, by *e2e.SigningKey, biz string, next *e2e.SigningKey) *heraldv1.SetSigningKeyRequest {
	t.Helper()
	sig, err := e2e.EndorseSigningKey(by, biz, next.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return &heraldv1.SetSigningKeyRequest{PublicKey: next.PublicKey(), Endorsement: sig, EndorsedByKeyId: e2e.KeyID(by.PublicKey())}
}

// requireReason checks a gRPC error's code and its ErrorInfo reason.
func requireReason(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if codeOf(err) != code || reasonOf(err) != reason {
		t.Fatalf("got %v (reason %q), want %s with reason %s", err, reasonOf(err), code, reason)
	}
}

// TestQueuedMessagesSurviveARotation: messages queued under a business's old signing
// key still open on every device, pinned or not, after the business rotated to a new
// key, because each delivery carries the key its message was signed with; a message
// signed with the new key opens too, on a device that pinned the old, because the old
// key endorsed the new one.
func TestQueuedMessagesSurviveARotation(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	biz, key := g.newBusiness("Acme")
	ctx := context.Background()
	oldSigner, _ := e2e.GenerateSigningKey()
	b := client.NewBusiness(g.conn, biz, key, oldSigner)
	if err := b.RegisterSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	oldID := b.SigningKeyID()
	phone := g.sdkDevice(alice)
	first, err := b.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := next(t, phone); err != nil || m.ID != first.MessageID {
		t.Fatalf("first message: %v, %v", m, err)
	}
	phone.Ack(ctx, first.MessageID) // the phone has pinned the old key
	tablet := g.sdkDevice(alice)    // the tablet has pinned nothing

	var queued []string
	for _, text := range []string{"one", "two", "three"} {
		s, err := b.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		queued = append(queued, s.MessageID)
	}
	newSigner, _ := e2e.GenerateSigningKey()
	if err := b.RotateSigningKey(ctx, newSigner); err != nil {
		t.Fatal(err)
	}
	s, err := b.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("under the new key"))
	if err != nil {
		t.Fatal(err)
	}
	queued = append(queued, s.MessageID)

	for name, d := range map[string]*client.Device{"phone": phone, "tablet": tablet} {
		for i, id := range queued {
			m, err := next(t, d)
			if err != nil || m.ID != id {
				t.Fatalf("%s, message %d after the rotation: %v, %v; want it opened", name, i, m, err)
			}
			d.Ack(ctx, id)
		}
	}

	// Retiring is explicit, and never of the current key.
	_, err = g.messaging.RetireSigningKey(as(key), &heraldv1.RetireSigningKeyRequest{KeyId: b.SigningKeyID()})
	requireReason(t, err, codes.FailedPrecondition, "CURRENT_SIGNING_KEY")
	if err := b.RetireSigningKey(ctx, oldID); err != nil {
		t.Fatal(err)
	}
	_, err = g.messaging.RetireSigningKey(as(key), &heraldv1.RetireSigningKeyRequest{KeyId: oldID})
	requireCode(t, err, codes.NotFound, "")
	_, err = g.messaging.RetireSigningKey(as(key), &heraldv1.RetireSigningKeyRequest{KeyId: "not a key"})
	requireCode(t, err, codes.InvalidArgument, "key_id")
	// A retired key endorses nothing.
	evil, _ := e2e.GenerateSigningKey()
	_, err = g.messaging.SetSigningKey(as(key), endorsed(t, oldSigner, biz, evil))
	requireCode(t, err, codes.InvalidArgument, "endorsed_by_key_id")
}

// TestSetSigningKeyNeedsAnEndorsement: the business API registers a first key
// unsigned, and after it only a key that one of the business's keys endorsed; each
// refusal says what is wrong, and none changes the key devices are given.
func TestSetSigningKeyNeedsAnEndorsement(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	biz, key := g.newBusiness("Acme")
	other, _ := g.newBusiness("Other")
	first, next, stranger := newSigner(t), newSigner(t), newSigner(t)

	// The first key: unsigned, and again.
	for range 2 {
		resp, err := g.messaging.SetSigningKey(as(key), &heraldv1.SetSigningKeyRequest{PublicKey: first.PublicKey()})
		if err != nil || resp.GetKeyId() != e2e.KeyID(first.PublicKey()) {
			t.Fatalf("the first key, unsigned: %v, %v", resp, err)
		}
	}
	before := snapshot(t, g.rdb)

	flipped := endorsed(t, first, biz, next)
	flipped.Endorsement[0] ^= 1
	forOther := endorsed(t, first, other, next)
	byStranger := endorsed(t, stranger, biz, next)
	strangerAsFirst := endorsed(t, stranger, biz, next)
	strangerAsFirst.EndorsedByKeyId = e2e.KeyID(first.PublicKey())
	short := endorsed(t, first, biz, next)
	short.Endorsement = short.Endorsement[:63]
	noID := endorsed(t, first, biz, next)
	noID.EndorsedByKeyId = ""
	for _, tc := range []struct {
		name   string
		req    *heraldv1.SetSigningKeyRequest
		code   codes.Code
		field  string // for INVALID_ARGUMENT
		reason string // for FAILED_PRECONDITION
	}{
		{"no endorsement", &heraldv1.SetSigningKeyRequest{PublicKey: next.PublicKey()}, codes.FailedPrecondition, "", "SIGNING_KEY_EXISTS"},
		{"a flipped signature", flipped, codes.InvalidArgument, "endorsement", ""},
		{"made for another business", forOther, codes.InvalidArgument, "endorsement", ""},
		{"a stranger's signature under the first key's id", strangerAsFirst, codes.InvalidArgument, "endorsement", ""},
		{"by a key not of the business", byStranger, codes.InvalidArgument, "endorsed_by_key_id", ""},
		{"a short signature", short, codes.InvalidArgument, "endorsement", ""},
		{"no endorsing key id", noID, codes.InvalidArgument, "endorsed_by_key_id", ""},
		{"a short key", &heraldv1.SetSigningKeyRequest{PublicKey: next.PublicKey()[:31]}, codes.InvalidArgument, "public_key", ""},
	} {
		_, err := g.messaging.SetSigningKey(as(key), tc.req)
		if tc.code == codes.InvalidArgument {
			requireCode(t, err, tc.code, tc.field)
		} else {
			requireReason(t, err, tc.code, tc.reason)
		}
		unchanged(t, g.rdb, before)
	}

	if _, err := g.messaging.SetSigningKey(as(key), endorsed(t, first, biz, next)); err != nil {
		t.Fatalf("a key endorsed by the first: %v", err)
	}
	_, err := g.messaging.SetSigningKey(as(key), endorsed(t, next, biz, first))
	requireReason(t, err, codes.FailedPrecondition, "SIGNING_KEY_REUSED")
}

// TestReplacementIsTheOperators: only the admin token replaces a business's key; the
// replacement is a new key nothing vouches for, so every device that pinned the old
// one sees a key change, and the keys it replaced endorse no key any more: whoever
// holds a lost key cannot make devices trust a key of their own.
func TestReplacementIsTheOperators(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	biz, key := g.newBusiness("Acme")
	ctx := context.Background()
	lost := newSigner(t)
	b := client.NewBusiness(g.conn, biz, key, lost)
	if err := b.RegisterSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	phone := g.sdkDevice(alice)
	s, err := b.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := next(t, phone); err != nil {
		t.Fatal(err)
	}
	phone.Ack(ctx, s.MessageID)

	replacement := newSigner(t)
	req := &heraldv1.ReplaceSigningKeyRequest{BusinessId: biz, PublicKey: replacement.PublicKey()}
	_, err = g.admin.ReplaceSigningKey(as(key), req)
	requireCode(t, err, codes.Unauthenticated, "")
	_, err = g.admin.ReplaceSigningKey(g.adminCtx(), &heraldv1.ReplaceSigningKeyRequest{BusinessId: "biz_nobody", PublicKey: replacement.PublicKey()})
	requireCode(t, err, codes.NotFound, "")
	_, err = g.admin.ReplaceSigningKey(g.adminCtx(), &heraldv1.ReplaceSigningKeyRequest{BusinessId: biz, PublicKey: []byte("short")})
	requireCode(t, err, codes.InvalidArgument, "public_key")
	_, err = g.admin.ReplaceSigningKey(g.adminCtx(), &heraldv1.ReplaceSigningKeyRequest{BusinessId: biz, PublicKey: lost.PublicKey()})
	if err != nil {
		t.Fatalf("replacing with the current key (nothing to do): %v", err)
	}
	resp, err := g.admin.ReplaceSigningKey(g.adminCtx(), req)
	if err != nil || resp.GetKeyId() != e2e.KeyID(replacement.PublicKey()) {
		t.Fatalf("ReplaceSigningKey = %v, %v", resp, err)
	}

	evil := newSigner(t)
	_, err = g.messaging.SetSigningKey(as(key), endorsed(t, lost, biz, evil))
	requireCode(t, err, codes.InvalidArgument, "endorsed_by_key_id")
	_, err = g.admin.ReplaceSigningKey(g.adminCtx(), &heraldv1.ReplaceSigningKeyRequest{BusinessId: biz, PublicKey: lost.PublicKey()})
	requireReason(t, err, codes.FailedPrecondition, "SIGNING_KEY_REUSED")

	s, err = client.NewBusiness(g.conn, biz, key, replacement).Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("new key"))
	if err != nil {
		t.Fatal(err)
	}
	var changed *client.KeyChangedError
	if m, err := next(t, phone); m != nil || !errors.As(err, &changed) || changed.MessageID != s.MessageID {
		t.Fatalf("a message under the replacement on a device that pinned the lost key: %v, %v; want a key change", m, err)
	}
}

// TestDeliveriesCarryTheChain: a delivery carries the chain of the key its message was
// signed with, newest first, each link verifiable by the next, back to the first key.
func TestDeliveriesCarryTheChain(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	biz, key := g.newBusiness("Acme")
	signers := []*e2e.SigningKey{newSigner(t), newSigner(t), newSigner(t)}
	if _, err := g.messaging.SetSigningKey(as(key), &heraldv1.SetSigningKeyRequest{PublicKey: signers[0].PublicKey()}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(signers); i++ {
		if _, err := g.messaging.SetSigningKey(as(key), endorsed(t, signers[i-1], biz, signers[i])); err != nil {
			t.Fatal(err)
		}
	}
	phone := g.register(alice)
	rx := g.receive(phone)
	for i, signer := range signers {
		m := msg(alice, tx, rcpt, "m"+string(rune('0'+i)), "hello", phone)
		m.SigningKeyId = e2e.KeyID(signer.PublicKey())
		if r := g.send(key, m); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
			t.Fatal(r)
		}
		d := rx.next()
		chain := d.GetBusinessKeyChain()
		if len(chain) != i+1 {
			t.Fatalf("message signed with key %d: a chain of %d links, want %d", i, len(chain), i+1)
		}
		for j, l := range chain {
			want := signers[i-j]
			if string(l.GetPublicKey()) != string(want.PublicKey()) || l.GetReplaced() {
				t.Fatalf("key %d, link %d: %x, want key %d", i, j, l.GetPublicKey(), i-j)
			}
			if j == len(chain)-1 {
				if len(l.GetEndorsement()) != 0 || l.GetEndorsedByKeyId() != "" {
					t.Fatalf("the first key's link has an endorsement: %v", l)
				}
				continue
			}
			if l.GetEndorsedByKeyId() != e2e.KeyID(chain[j+1].GetPublicKey()) ||
				e2e.VerifyEndorsement(chain[j+1].GetPublicKey(), biz, l.GetPublicKey(), l.GetEndorsement()) != nil {
				t.Fatalf("key %d, link %d does not verify under the next: %v", i, j, l)
			}
		}
		if string(d.GetBusinessSigningKey()) != string(chain[0].GetPublicKey()) {
			t.Fatal("business_signing_key is not the chain's first link")
		}
	}
}

func newSigner(t *testing.T) *e2e.SigningKey {
	t.Helper()
	k, err := e2e.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRotationSeenAtOnceByEveryGateway: a gateway that cached the business's profile
// before another gateway registered a rotation still delivers a message signed with
// the new key with that key and its chain, not with the key before it (which the
// device would refuse for good as a bad signature).
func TestRotationSeenAtOnceByEveryGateway(t *testing.T) {
	t.Parallel()
	a := startGateway(t)
	b := startGatewayOn(t, a.redis)
	biz, key := a.newBusiness("Acme")
	ctx := context.Background()
	sender := client.NewBusiness(a.conn, biz, key, newSigner(t))
	if err := sender.RegisterSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	phone := b.sdkDevice(alice) // receives through b, which caches the profile
	s, err := sender.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := next(t, phone); err != nil || m.ID != s.MessageID {
		t.Fatalf("first message: %v, %v", m, err)
	}
	phone.Ack(ctx, s.MessageID)

	if err := sender.RotateSigningKey(ctx, newSigner(t)); err != nil {
		t.Fatal(err)
	}
	s, err = sender.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("after"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := next(t, phone); err != nil || m.ID != s.MessageID {
		t.Fatalf("a message under the new key, through a gateway that cached the old: %v, %v; want it opened", m, err)
	}
}
