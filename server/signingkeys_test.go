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

// TestQueuedMessagesSurviveAKeyReplacement: messages queued under a business's old
// signing key still open on every device, pinned or not, after the business replaced
// the key, because each delivery carries the key its message was signed with. A
// message signed with the new key is a key change for a device that pinned the old.
func TestQueuedMessagesSurviveAKeyReplacement(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	biz, key := g.newBusiness("Acme")
	ctx := context.Background()
	oldSigner, _ := e2e.GenerateSigningKey()
	old := client.NewBusiness(g.conn, biz, key, oldSigner)
	if err := old.RegisterSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	phone := g.sdkDevice(alice)
	first, err := old.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("first"))
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
		s, err := old.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		queued = append(queued, s.MessageID)
	}
	newSigner, _ := e2e.GenerateSigningKey()
	replaced := client.NewBusiness(g.conn, biz, key, newSigner)
	if err := replaced.ReplaceSigningKey(ctx); err != nil {
		t.Fatal(err)
	}

	for name, d := range map[string]*client.Device{"phone": phone, "tablet": tablet} {
		for i, id := range queued {
			m, err := next(t, d)
			if err != nil || m.ID != id {
				t.Fatalf("%s, queued message %d after the key was replaced: %v, %v; want it opened", name, i, m, err)
			}
			d.Ack(ctx, id)
		}
	}

	s, err := replaced.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("under the new key"))
	if err != nil {
		t.Fatal(err)
	}
	var changed *client.KeyChangedError
	if m, err := next(t, phone); m != nil || !errors.As(err, &changed) || changed.MessageID != s.MessageID {
		t.Fatalf("a message under the new key on a device that pinned the old: %v, %v; want a key change", m, err)
	}

	// Retiring is explicit, and never of the current key.
	_, err = g.messaging.RetireSigningKey(as(key), &heraldv1.RetireSigningKeyRequest{KeyId: replaced.SigningKeyID()})
	requireCode(t, err, codes.FailedPrecondition, "")
	if err := replaced.RetireSigningKey(ctx, old.SigningKeyID()); err != nil {
		t.Fatal(err)
	}
	_, err = g.messaging.RetireSigningKey(as(key), &heraldv1.RetireSigningKeyRequest{KeyId: old.SigningKeyID()})
	requireCode(t, err, codes.NotFound, "")
	_, err = g.messaging.RetireSigningKey(as(key), &heraldv1.RetireSigningKeyRequest{KeyId: "not a key"})
	requireCode(t, err, codes.InvalidArgument, "key_id")
}
