package server

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestBadInputChangesNothing sends every kind of bad request and checks that each
// gets INVALID_ARGUMENT naming the field, and that the store is exactly as before.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	biz, key := g.newBusiness("Acme")
	phone := g.register(alice)
	good := func() *heraldv1.Message { return msg(alice, tx, rcpt, "id-1", "hello", phone) }
	before := quiet(t, g.rdb)

	send := func(m *heraldv1.Message) error {
		_, err := g.messaging.Send(as(key), &heraldv1.SendRequest{Message: m})
		return err
	}
	with := func(f func(m *heraldv1.Message)) *heraldv1.Message { m := good(); f(m); return m }
	big := make([]*heraldv1.Message, 1001)
	for i := range big {
		big[i] = good()
	}
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"bad phone number", func() error { return send(with(func(m *heraldv1.Message) { m.Recipient = "+1415555" })) }, "message.recipient"},
		{"phone without country", func() error { return send(with(func(m *heraldv1.Message) { m.Recipient = "4155550123" })) }, "message.recipient"},
		{"missing message", func() error { return send(nil) }, "message"},
		{"missing idempotency key", func() error { return send(with(func(m *heraldv1.Message) { m.ClientMessageId = "" })) }, "message.client_message_id"},
		{"idempotency key with spaces", func() error { return send(with(func(m *heraldv1.Message) { m.ClientMessageId = "a b" })) }, "message.client_message_id"},
		{"kind of another category", func() error { return send(with(func(m *heraldv1.Message) { m.Kind = offr })) }, "message.kind"},
		{"unknown category", func() error { return send(with(func(m *heraldv1.Message) { m.Category = 7 })) }, "message.category"},
		{"unknown kind", func() error { return send(with(func(m *heraldv1.Message) { m.Kind = 42 })) }, "message.kind"},
		{"no category", func() error { return send(with(func(m *heraldv1.Message) { m.Category = 0 })) }, "message.category"},
		{"envelope over 64 KiB", func() error {
			return send(with(func(m *heraldv1.Message) { m.Envelopes[0].Ciphertext = bytes.Repeat([]byte{1}, 64<<10+1) }))
		}, "message.envelopes[0].ciphertext"},
		{"empty envelope", func() error { return send(with(func(m *heraldv1.Message) { m.Envelopes[0].Ciphertext = nil })) }, "message.envelopes[0].ciphertext"},
		{"no envelopes", func() error { return send(with(func(m *heraldv1.Message) { m.Envelopes = nil })) }, "message.envelopes"},
		{"two envelopes for one device", func() error {
			return send(with(func(m *heraldv1.Message) { m.Envelopes = append(m.Envelopes, m.Envelopes[0]) }))
		}, "message.envelopes[1].device_id"},
		{"ttl over 30 days", func() error {
			return send(with(func(m *heraldv1.Message) { m.Ttl = durationpb.New(31 * 24 * time.Hour) }))
		}, "message.ttl"},
		{"1001-entry batch", func() error {
			_, err := g.messaging.SendBatch(as(key), &heraldv1.SendBatchRequest{Messages: big})
			return err
		}, "messages"},
		{"empty batch", func() error {
			_, err := g.messaging.SendBatch(as(key), &heraldv1.SendBatchRequest{})
			return err
		}, "messages"},
		{"lookup: bad phone", func() error {
			_, err := g.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: "nope", Category: tx})
			return err
		}, "recipient"},
		{"lookup: unknown category", func() error {
			_, err := g.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: alice, Category: 9})
			return err
		}, "category"},
		{"record consent: no evidence", func() error {
			_, err := g.messaging.RecordConsent(as(key), &heraldv1.RecordConsentRequest{Recipient: alice, Category: mk,
				Consent: heraldv1.Consent_CONSENT_OPTED_IN})
			return err
		}, "evidence"},
		{"record consent: evidence from the future", func() error {
			_, err := g.messaging.RecordConsent(as(key), &heraldv1.RecordConsentRequest{Recipient: alice, Category: mk,
				Consent: heraldv1.Consent_CONSENT_OPTED_IN, Evidence: &heraldv1.ConsentEvidence{Source: "web",
					CollectedTime: timestamppb.New(time.Now().Add(time.Hour))}})
			return err
		}, "evidence.collected_time"},
		{"status: bad cursor", func() error {
			st, err := g.messaging.StreamStatus(as(key), &heraldv1.StreamStatusRequest{Cursor: "x"})
			if err == nil {
				_, err = st.Recv()
			}
			return err
		}, "cursor"},
		{"set consent: unknown consent", func() error {
			_, err := g.recipient.SetConsent(as(phone.token), &heraldv1.SetConsentRequest{BusinessId: biz, Category: mk, Consent: 5})
			return err
		}, "consent"},
		{"block: no business id", func() error {
			_, err := g.recipient.Block(as(phone.token), &heraldv1.BlockRequest{})
			return err
		}, "business_id"},
		{"ack: not a message id", func() error {
			_, err := g.recipient.Ack(as(phone.token), &heraldv1.AckRequest{MessageIds: []string{"junk"}})
			return err
		}, "message_ids[0]"},
		{"register: bad phone", func() error {
			_, err := g.recipient.RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{PhoneNumber: "+1", Code: "1",
				PublicKey: x25519Key(), KeyAlgorithm: 2})
			return err
		}, "phone_number"},
		{"register: unknown key algorithm", func() error {
			_, err := g.recipient.RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{PhoneNumber: alice, Code: "1",
				PublicKey: x25519Key(), KeyAlgorithm: 99})
			return err
		}, "key_algorithm"},
		{"create business: no name", func() error {
			_, err := g.admin.CreateBusiness(g.adminCtx(), &heraldv1.CreateBusinessRequest{})
			return err
		}, "display_name"},
		{"issue code: bad phone", func() error {
			_, err := g.admin.IssueVerificationCode(g.adminCtx(), &heraldv1.IssueVerificationCodeRequest{PhoneNumber: "555"})
			return err
		}, "phone_number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireCode(t, tc.call(), codes.InvalidArgument, tc.field)
		})
	}
	unchanged(t, g.rdb, before)
}

// TestBatchEntriesStandAlone checks that a bad entry gets its own result naming the
// field, and the others are admitted in order.
func TestBatchEntriesStandAlone(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	_, key := g.newBusiness("Acme")
	phone := g.register(alice)
	bad := msg("+1415", tx, rcpt, "b-2", "x", phone)
	resp, err := g.messaging.SendBatch(as(key), &heraldv1.SendBatchRequest{Messages: []*heraldv1.Message{
		msg(alice, tx, rcpt, "b-1", "one", phone), bad, msg(alice, mk, offr, "b-3", "offer", phone),
		msg(bob, tx, rcpt, "b-4", "to bob", phone), msg(alice, tx, rcpt, "b-5", "five", phone),
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []heraldv1.Outcome{heraldv1.Outcome_OUTCOME_ACCEPTED, heraldv1.Outcome_OUTCOME_INVALID,
		heraldv1.Outcome_OUTCOME_NOT_OPTED_IN, heraldv1.Outcome_OUTCOME_UNKNOWN_RECIPIENT, heraldv1.Outcome_OUTCOME_ACCEPTED}
	if len(resp.Results) != len(want) {
		t.Fatalf("%d results, want %d", len(resp.Results), len(want))
	}
	for i, r := range resp.Results {
		if r.Outcome != want[i] {
			t.Errorf("result %d = %v, want %v", i, r.Outcome, want[i])
		}
	}
	if v := resp.Results[1].Violations; len(v) != 1 || v[0].Field != "messages[1].recipient" {
		t.Errorf("violations = %v, want messages[1].recipient", v)
	}
	rc := g.receive(phone)
	if a, b := rc.next(), rc.next(); a.MessageId != resp.Results[0].MessageId || b.MessageId != resp.Results[4].MessageId {
		t.Fatalf("delivered %s, %s; want the two accepted in order", a.MessageId, b.MessageId)
	}
}

// TestBadKeysAreRefusedAtTheDoor: a device key that no sender could seal to (wrong
// length, an all-zero ML-KEM vector, an X25519 point of low order) is refused with
// INVALID_ARGUMENT naming public_key, at registration and at rotation, and changes
// nothing: the verification code is not spent, the old key stays.
func TestBadKeysAreRefusedAtTheDoor(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	phone := g.register(alice)
	hybrid, err := e2e.GenerateDeviceKey(e2e.MLKEM768X25519)
	if err != nil {
		t.Fatal(err)
	}
	pub := hybrid.PublicKey()
	code, err := g.admin.IssueVerificationCode(g.adminCtx(), &heraldv1.IssueVerificationCodeRequest{PhoneNumber: bob})
	if err != nil {
		t.Fatal(err)
	}
	before := quiet(t, g.rdb)
	for _, c := range []struct {
		name string
		alg  heraldv1.KeyAlgorithm
		key  []byte
	}{
		{"ml-kem: the size of an x25519 key", 1, x25519Key()},
		{"ml-kem: all zeros", 1, make([]byte, 1216)},
		{"ml-kem: key vector all zeros", 1, slices.Concat(make([]byte, 1152), pub[1152:])},
		{"ml-kem: a coefficient out of range", 1, slices.Concat(bytes.Repeat([]byte{0xff}, 1152), pub[1152:])},
		{"ml-kem: x25519 part of low order", 1, slices.Concat(pub[:1184], make([]byte, 32))},
		{"x25519: all zeros", 2, make([]byte, 32)},
		{"x25519: the point 1", 2, append([]byte{1}, make([]byte, 31)...)},
		{"x25519: too long", 2, append(x25519Key(), 0)},
		{"x25519: a hybrid key", 2, pub},
	} {
		_, err := g.recipient.RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{PhoneNumber: bob,
			Code: code.Code, PublicKey: c.key, KeyAlgorithm: c.alg})
		requireCode(t, err, codes.InvalidArgument, "public_key")
		_, err = g.recipient.RotateKey(as(phone.token), &heraldv1.RotateKeyRequest{PublicKey: c.key, KeyAlgorithm: c.alg})
		requireCode(t, err, codes.InvalidArgument, "public_key")
	}
	unchanged(t, g.rdb, before)
	// The code was not spent on the refusals.
	if _, err := g.recipient.RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{PhoneNumber: bob,
		Code: code.Code, PublicKey: pub, KeyAlgorithm: 1}); err != nil {
		t.Fatalf("registering a good key with the code after the refusals: %v", err)
	}
}
