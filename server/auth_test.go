package server

import (
	"context"
	"testing"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/grpc/codes"
)

func TestTokensAndPermissions(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	_, key := g.newBusiness("Acme")
	_, otherKey := g.newBusiness("Other")
	phone := g.register(alice)
	bobPhone := g.register(bob)
	r := g.send(key, msg(alice, tx, rcpt, "p-1", "hello", phone))
	events := g.statuses(key, "")
	first := events.waitFor(t, r.MessageId, heraldv1.Status_STATUS_ACCEPTED, "")
	before := quiet(t, g.rdb)

	send := func(ctx context.Context) error {
		_, err := g.messaging.Send(ctx, &heraldv1.SendRequest{Message: msg(alice, tx, rcpt, "p-2", "x", phone)})
		return err
	}
	stream := func(ctx context.Context, cursor string) error {
		st, err := g.messaging.StreamStatus(ctx, &heraldv1.StreamStatusRequest{Cursor: cursor})
		if err == nil {
			_, err = st.Recv()
		}
		return err
	}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"send without token", func() error { return send(context.Background()) }, codes.Unauthenticated},
		{"send with a made-up key", func() error { return send(as("hk_abc_def")) }, codes.Unauthenticated},
		{"send with the admin token", func() error { return send(as(testAdminToken)) }, codes.Unauthenticated},
		{"send with a device token", func() error { return send(as(phone.token)) }, codes.Unauthenticated},
		{"admin with an API key", func() error {
			_, err := g.admin.CreateBusiness(as(key), &heraldv1.CreateBusinessRequest{DisplayName: "x"})
			return err
		}, codes.Unauthenticated},
		{"device call with an API key", func() error {
			_, err := g.recipient.ListPreferences(as(key), &heraldv1.ListPreferencesRequest{})
			return err
		}, codes.Unauthenticated},
		{"device token with a wrong secret", func() error {
			_, err := g.recipient.ListPreferences(as(phone.token[:len(phone.token)-2]+"aa"), &heraldv1.ListPreferencesRequest{})
			return err
		}, codes.Unauthenticated},
		{"receive without token", func() error {
			st, err := g.recipient.Receive(context.Background(), &heraldv1.ReceiveRequest{})
			if err == nil {
				_, err = st.Recv()
			}
			return err
		}, codes.Unauthenticated},
		{"another business's status cursor", func() error { return stream(as(otherKey), first[0].Cursor) }, codes.PermissionDenied},
		{"a device acking another person's message", func() error {
			_, err := g.recipient.Ack(as(bobPhone.token), &heraldv1.AckRequest{MessageIds: []string{r.MessageId}})
			return err
		}, codes.PermissionDenied},
		{"register with a wrong code", func() error {
			_, err := g.recipient.RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{PhoneNumber: alice,
				Code: "00000000", PublicKey: x25519Key(), KeyAlgorithm: 2})
			return err
		}, codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) { requireCode(t, tc.call(), tc.code, "") })
	}
	unchanged(t, g.rdb, before)
}

// TestVerificationCodeIsSpentOnce checks that a code registers one device and that
// wrong guesses lock the number, whatever code is issued after them.
func TestVerificationCodeIsSpentOnce(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	code, err := g.admin.IssueVerificationCode(g.adminCtx(), &heraldv1.IssueVerificationCodeRequest{PhoneNumber: alice})
	if err != nil {
		t.Fatal(err)
	}
	reg := func(c string) error {
		_, err := g.recipient.RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{PhoneNumber: alice,
			Code: c, PublicKey: x25519Key(), KeyAlgorithm: 2})
		return err
	}
	if err := reg(code.Code); err != nil {
		t.Fatal(err)
	}
	requireCode(t, reg(code.Code), codes.PermissionDenied, "")

	code, _ = g.admin.IssueVerificationCode(g.adminCtx(), &heraldv1.IssueVerificationCodeRequest{PhoneNumber: alice})
	for range 5 {
		requireCode(t, reg("12345678x"), codes.PermissionDenied, "")
	}
	// No code is taken for the number now, not even the right one, and a new one does
	// not bring new tries.
	requireCode(t, reg(code.Code), codes.ResourceExhausted, "")
	code, _ = g.admin.IssueVerificationCode(g.adminCtx(), &heraldv1.IssueVerificationCodeRequest{PhoneNumber: alice})
	requireCode(t, reg(code.Code), codes.ResourceExhausted, "")
}
