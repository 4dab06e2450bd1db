package server

import (
	"context"
	"errors"
	"testing"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/redistest"
	"google.golang.org/grpc/codes"
)

// TestRefusedDeliveryIsReportedFailed: a delivery the device refuses (here, tampered
// in Redis) reaches the business as STATUS_FAILED with the device and the reason, and
// never as STATUS_DELIVERED, even if an ack for it comes after.
func TestRefusedDeliveryIsReportedFailed(t *testing.T) {
	t.Parallel()
	if redistest.Memory() {
		t.Skip("edits redis-server directly")
	}
	g := startGateway(t)
	biz, key := g.newBusiness("Acme")
	ctx := context.Background()
	signer, _ := e2e.GenerateSigningKey()
	bus := client.NewBusiness(g.conn, biz, key, signer)
	if err := bus.RegisterSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	phone := g.sdkDevice(alice)
	statuses := g.statuses(key, "")

	tampered, err := bus.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("your receipt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.rdb.HSet(ctx, msgKey(tampered.MessageID), "k", "reservation").Err(); err != nil {
		t.Fatal(err)
	}
	m, err := next(t, phone)
	var rej *client.RejectedDeliveryError
	if m != nil || !errors.As(err, &rej) || !errors.Is(err, e2e.ErrHeaderMismatch) || !rej.Dropped {
		t.Fatalf("got %v, %v; want the delivery refused for a header mismatch, and reported", m, err)
	}
	seen := statuses.waitFor(t, tampered.MessageID, heraldv1.Status_STATUS_FAILED, phone.ID())
	if e := seen[len(seen)-1]; e.FailureReason != heraldv1.RejectReason_REJECT_REASON_HEADER_MISMATCH {
		t.Fatalf("FAILED event %v, want reason HEADER_MISMATCH", e)
	}

	// An ack of it afterwards changes nothing: it was refused, not delivered.
	if err := phone.Ack(ctx, tampered.MessageID); err != nil {
		t.Fatal(err)
	}
	honest, err := bus.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("another"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := next(t, phone); err != nil || m.ID != honest.MessageID {
		t.Fatalf("honest message: %v, %v", m, err)
	}
	if err := phone.Ack(ctx, honest.MessageID); err != nil {
		t.Fatal(err)
	}
	for _, e := range statuses.waitFor(t, honest.MessageID, heraldv1.Status_STATUS_DELIVERED, phone.ID()) {
		if e.MessageId == tampered.MessageID && e.Status == heraldv1.Status_STATUS_DELIVERED {
			t.Fatalf("the refused delivery was reported delivered: %v", e)
		}
	}
}

// A refusal without a reason, or of another person's message, is refused at the door
// and changes nothing.
func TestRejectionsAreValidated(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	_, key := g.newBusiness("Acme")
	phone, other := g.register(alice), g.register(bob)
	r := g.send(key, msg(alice, tx, rcpt, "c1", "hi", phone))
	before := quiet(t, g.rdb)
	_, err := g.recipient.Ack(as(phone.token), &heraldv1.AckRequest{Rejections: []*heraldv1.Rejection{{MessageId: r.MessageId}}})
	requireCode(t, err, codes.InvalidArgument, "rejections[0].reason")
	_, err = g.recipient.Ack(as(other.token), &heraldv1.AckRequest{Rejections: []*heraldv1.Rejection{{MessageId: r.MessageId,
		Reason: heraldv1.RejectReason_REJECT_REASON_BAD_SIGNATURE}}})
	requireCode(t, err, codes.PermissionDenied, "")
	unchanged(t, g.rdb, before)
}
