package server

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/keylog"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// registerRaw registers a device for number with a fresh code and a fresh key, and
// approves nothing.
func (g *gateway) registerRaw(number string) (*heraldv1.RegisterDeviceResponse, []byte) {
	g.t.Helper()
	code, err := g.admin.IssueVerificationCode(g.adminCtx(), &heraldv1.IssueVerificationCodeRequest{PhoneNumber: number})
	if err != nil {
		g.t.Fatal(err)
	}
	pub := x25519Key()
	r, err := g.recipient.RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{PhoneNumber: number,
		Code: code.Code, PublicKey: pub, KeyAlgorithm: heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_X25519})
	if err != nil {
		g.t.Fatal(err)
	}
	return r, pub
}

// nextNotice waits for the next device notice on a stream.
func (r *receiver) nextNotice() *heraldv1.DeviceNotice {
	r.t.Helper()
	select {
	case n := <-r.notices:
		return n
	case <-time.After(10 * time.Second):
		r.t.Fatal("no device notice within 10s")
	}
	return nil
}

// TestTakeoverNeedsApproval: a second registration with a fresh verification code (a
// SIM swap, an operator's SMS system in the wrong hands) gets no message until an
// existing device approves it; the existing device is told at once, with the key it
// is asked to approve; LookupRecipient does not list the pending device, so no
// business seals to it. Once removed, its token is refused and it receives nothing.
func TestTakeoverNeedsApproval(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	_, key := g.newBusiness("Acme")
	phone := g.register(alice)
	watch := g.receive(phone)

	reg, pub := g.registerRaw(alice)
	if !reg.Pending || reg.ActivateTime == nil {
		t.Fatalf("a second device registered without approval: %v", reg)
	}
	intruder := device{id: reg.DeviceId, token: reg.DeviceToken}
	n := watch.nextNotice()
	if n.Event != heraldv1.DeviceEvent_DEVICE_EVENT_PENDING || n.DeviceId != intruder.id || n.KeyId != e2e.KeyID(pub) ||
		string(n.PublicKey) != string(pub) || !n.ActivateTime.AsTime().Equal(reg.ActivateTime.AsTime()) {
		t.Fatalf("notice = %v", n)
	}

	// Pending: it cannot receive or do anything else, and businesses do not see it.
	st, err := g.recipient.Receive(as(intruder.token), &heraldv1.ReceiveRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	requireReason(t, err, codes.FailedPrecondition, "DEVICE_PENDING")
	_, err = g.recipient.ListDevices(as(intruder.token), &heraldv1.ListDevicesRequest{})
	requireReason(t, err, codes.FailedPrecondition, "DEVICE_PENDING")
	look, err := g.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: alice, Category: tx})
	if err != nil || len(look.Devices) != 1 || look.Devices[0].DeviceId != phone.id {
		t.Fatalf("lookup lists %v, %v; want only the phone", look.GetDevices(), err)
	}
	r := g.send(key, msg(alice, tx, rcpt, "otp-1", "your one-time login code is 424242", phone))
	if r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("send = %v", r)
	}
	if d := watch.next(); d.MessageId != r.MessageId {
		t.Fatalf("the phone got %s", d.MessageId)
	}
	if got := g.rdb.Keys(context.Background(), "hr:{u:*}:mb:"+intruder.id).Val(); len(got) != 0 {
		t.Fatalf("the pending device has a mailbox: %v", got)
	}

	// The phone lists it, pending, and removes it.
	list, err := g.recipient.ListDevices(as(phone.token), &heraldv1.ListDevicesRequest{})
	if err != nil || len(list.Devices) != 2 {
		t.Fatalf("list = %v, %v", list, err)
	}
	for _, d := range list.Devices {
		pending := d.State == heraldv1.DeviceState_DEVICE_STATE_PENDING
		if pending != (d.DeviceId == intruder.id) || d.ThisDevice != (d.DeviceId == phone.id) {
			t.Fatalf("listed %v", d)
		}
	}
	if _, err := g.recipient.RemoveDevice(as(phone.token), &heraldv1.RemoveDeviceRequest{DeviceId: intruder.id}); err != nil {
		t.Fatal(err)
	}
	if n := watch.nextNotice(); n.Event != heraldv1.DeviceEvent_DEVICE_EVENT_REMOVED || n.DeviceId != intruder.id || n.ByDeviceId != phone.id {
		t.Fatalf("notice = %v", n)
	}
	_, err = g.recipient.ListDevices(as(intruder.token), &heraldv1.ListDevicesRequest{})
	requireCode(t, err, codes.Unauthenticated, "")
	// An approval after the refusal finds nothing.
	_, err = g.recipient.ApproveDevice(as(phone.token), &heraldv1.ApproveDeviceRequest{DeviceId: intruder.id, KeyId: e2e.KeyID(pub)})
	requireCode(t, err, codes.NotFound, "")
}

// TestApprovedDeviceReceivesAndRemovedDeviceStops: an approval names the key the
// person compared (another key is refused); an approved device receives what is sent
// after; removing it ends its open stream, refuses its token, and reports what was
// queued for it expired.
func TestApprovedDeviceReceivesAndRemovedDeviceStops(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	_, key := g.newBusiness("Acme")
	phone := g.register(alice)
	reg, pub := g.registerRaw(alice)
	laptop := device{id: reg.DeviceId, token: reg.DeviceToken}

	_, err := g.recipient.ApproveDevice(as(phone.token), &heraldv1.ApproveDeviceRequest{DeviceId: laptop.id, KeyId: e2e.KeyID(x25519Key())})
	requireReason(t, err, codes.FailedPrecondition, "KEY_MISMATCH")
	// A pending device cannot approve itself.
	_, err = g.recipient.ApproveDevice(as(laptop.token), &heraldv1.ApproveDeviceRequest{DeviceId: laptop.id, KeyId: e2e.KeyID(pub)})
	requireReason(t, err, codes.FailedPrecondition, "DEVICE_PENDING")
	if _, err := g.recipient.ApproveDevice(as(phone.token), &heraldv1.ApproveDeviceRequest{DeviceId: laptop.id, KeyId: e2e.KeyID(pub)}); err != nil {
		t.Fatal(err)
	}
	rc := g.receive(laptop)
	// The laptop sees the notices of its own arrival.
	for _, want := range []heraldv1.DeviceEvent{heraldv1.DeviceEvent_DEVICE_EVENT_PENDING, heraldv1.DeviceEvent_DEVICE_EVENT_APPROVED} {
		if n := rc.nextNotice(); n.Event != want || n.DeviceId != laptop.id {
			t.Fatalf("notice = %v, want %v", n, want)
		}
	}
	r := g.send(key, msg(alice, tx, rcpt, "m-1", "hello", phone, laptop))
	if d := rc.next(); d.MessageId != r.MessageId {
		t.Fatalf("the laptop got %s", d.MessageId)
	}
	// Queued for the laptop, not acknowledged: reported expired when it goes.
	r2 := g.send(key, msg(alice, tx, rcpt, "m-2", "again", phone, laptop))
	if d := rc.next(); d.MessageId != r2.MessageId {
		t.Fatalf("the laptop got %s", d.MessageId)
	}
	statuses := g.statuses(key, "")
	if _, err := g.recipient.RemoveDevice(as(phone.token), &heraldv1.RemoveDeviceRequest{DeviceId: laptop.id}); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-rc.ch:
		if ok {
			t.Fatal("a delivery after the removal")
		}
		if err := <-rc.errc; codeOf(err) != codes.Unauthenticated {
			t.Fatalf("the removed device's stream ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the removed device's stream is still open")
	}
	_, err = g.recipient.Ack(as(laptop.token), &heraldv1.AckRequest{MessageIds: []string{r.MessageId}})
	requireCode(t, err, codes.Unauthenticated, "")
	for _, want := range []string{r.MessageId, r2.MessageId} {
		statuses.waitFor(t, want, heraldv1.Status_STATUS_EXPIRED, laptop.id)
	}
	look, err := g.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: alice, Category: tx})
	if err != nil || len(look.Devices) != 1 {
		t.Fatalf("lookup after the removal = %v, %v", look.GetDevices(), err)
	}
}

// TestWaitingPeriodActivatesUnrefusedDevice: a person who lost every device gets back
// in: the new device becomes active once the waiting period passed and no device
// refused it, and the old devices are told.
func TestWaitingPeriodActivatesUnrefusedDevice(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := startGateway(t, withClock(c), func(cfg *Config) { cfg.ApprovalWait = time.Hour })
	phone := g.register(alice)
	reg, _ := g.registerRaw(alice)
	fresh := device{id: reg.DeviceId, token: reg.DeviceToken}
	c.Add(59 * time.Minute)
	_, err := g.recipient.ListDevices(as(fresh.token), &heraldv1.ListDevicesRequest{})
	requireReason(t, err, codes.FailedPrecondition, "DEVICE_PENDING")
	c.Add(2 * time.Minute)
	if _, err := g.recipient.ListDevices(as(fresh.token), &heraldv1.ListDevicesRequest{}); err != nil {
		t.Fatalf("after the waiting period: %v", err)
	}
	rc := g.receive(phone)
	for _, want := range []heraldv1.DeviceEvent{heraldv1.DeviceEvent_DEVICE_EVENT_PENDING, heraldv1.DeviceEvent_DEVICE_EVENT_ACTIVATED} {
		if n := rc.nextNotice(); n.Event != want || n.DeviceId != fresh.id {
			t.Fatalf("notice = %v, want %v", n, want)
		}
	}
}

// TestNoticesComeUntilAcknowledged: a notice comes with every Receive until the
// device acknowledges it, and not after.
func TestNoticesComeUntilAcknowledged(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	phone := g.register(alice)
	g.registerRaw(alice)
	first := g.receive(phone).nextNotice()
	if again := g.receive(phone).nextNotice(); again.NoticeId != first.NoticeId {
		t.Fatalf("a new stream sent %s, want the unacknowledged %s again", again.NoticeId, first.NoticeId)
	}
	_, err := g.recipient.Ack(as(phone.token), &heraldv1.AckRequest{NoticeIds: []string{"junk"}})
	requireCode(t, err, codes.InvalidArgument, "notice_ids[0]")
	if _, err := g.recipient.Ack(as(phone.token), &heraldv1.AckRequest{NoticeIds: []string{first.NoticeId}}); err != nil {
		t.Fatal(err)
	}
	// A message queued behind it settles the question: a stream sends its notices
	// before its deliveries, so once the message is here any notice would be too.
	_, key := g.newBusiness("Acme")
	sent := g.send(key, msg(alice, tx, rcpt, "after-ack", "hello", phone))
	rc := g.receive(phone)
	if d := rc.next(); d.MessageId != sent.MessageId {
		t.Fatalf("delivery %s, want %s", d.MessageId, sent.MessageId)
	}
	select {
	case n := <-rc.notices:
		t.Fatalf("an acknowledged notice came again: %v", n)
	default:
	}
}

// TestRotateKeyNeedsTheCurrentKey: a stolen token alone cannot replace a device's key:
// RotateKey needs the challenge opened with the current private key; a wrong answer,
// an answer for another expiry or one past its expiry is refused and changes nothing.
func TestRotateKeyNeedsTheCurrentKey(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := startGateway(t, withClock(c))
	k, err := e2e.GenerateDeviceKey(e2e.X25519)
	if err != nil {
		t.Fatal(err)
	}
	code, _ := g.admin.IssueVerificationCode(g.adminCtx(), &heraldv1.IssueVerificationCodeRequest{PhoneNumber: alice})
	reg, err := g.recipient.RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{PhoneNumber: alice,
		Code: code.Code, PublicKey: k.PublicKey(), KeyAlgorithm: heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_X25519})
	if err != nil {
		t.Fatal(err)
	}
	tok := reg.DeviceToken
	rotate := func(answer []byte, exp *timestamppb.Timestamp) error {
		_, err := g.recipient.RotateKey(as(tok), &heraldv1.RotateKeyRequest{PublicKey: x25519Key(),
			KeyAlgorithm: heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_X25519, ChallengeResponse: answer, ChallengeExpireTime: exp})
		return err
	}
	ch, err := g.recipient.GetKeyChallenge(as(tok), &heraldv1.GetKeyChallengeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	answer, err := k.OpenChallenge(ch.Challenge)
	if err != nil {
		t.Fatal(err)
	}
	requireCode(t, rotate(nil, ch.ExpireTime), codes.InvalidArgument, "challenge_response")
	requireCode(t, rotate(answer, nil), codes.InvalidArgument, "challenge_expire_time")
	before := quiet(t, g.rdb)
	requireCode(t, rotate([]byte("a guess of 32 bytes, not the one"), ch.ExpireTime), codes.PermissionDenied, "")
	requireCode(t, rotate(answer, timestamppb.New(ch.ExpireTime.AsTime().Add(time.Second))), codes.PermissionDenied, "")
	c.Add(6 * time.Minute)
	requireCode(t, rotate(answer, ch.ExpireTime), codes.PermissionDenied, "")
	unchanged(t, g.rdb, before)

	ch, _ = g.recipient.GetKeyChallenge(as(tok), &heraldv1.GetKeyChallengeRequest{})
	answer, _ = k.OpenChallenge(ch.Challenge)
	if err := rotate(answer, ch.ExpireTime); err != nil {
		t.Fatalf("rotation with the answer: %v", err)
	}
	// The answer was for the old key: it does not rotate again.
	requireCode(t, rotate(answer, ch.ExpireTime), codes.PermissionDenied, "")
}

// TestAuditShowsADeviceAddedBehindThePersonsBack: someone with Redis access writes a
// device straight into a person's device hash; once a lookup hands its key to a
// business, the key is in the log, and the person's audit shows it beside the events
// of their own devices.
func TestAuditShowsADeviceAddedBehindThePersonsBack(t *testing.T) {
	t.Parallel()
	skey, vkey, err := keylog.GenerateKey("herald-test-log")
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, func(c *Config) { c.LogKey = skey })
	_, key := g.newBusiness("Acme")
	phone := g.register(alice)
	laptop := g.register(alice) // pending, then approved by the phone
	uid := g.srv.uid(alice)
	spy := x25519Key()
	rec := keys.DeviceRecord{Algorithm: 2, PublicKey: spy, TokenHash: "00", Created: time.Now(), KeyID: e2e.KeyID(spy)}
	if err := g.rdb.HSet(context.Background(), keys.Recipient(uid).Devices(), "dspy", rec.Encode()).Err(); err != nil {
		t.Fatal(err)
	}
	look, err := g.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: alice, Category: tx})
	if err != nil || len(look.Devices) != 3 || len(look.KeyLogCheckpoint) == 0 {
		t.Fatalf("lookup = %v, %v", look, err)
	}
	for _, d := range look.Devices {
		if d.KeyProof == nil {
			t.Fatalf("device %s listed without a proof", d.DeviceId)
		}
	}
	audit, err := g.recipient.AuditKeys(as(phone.token), &heraldv1.AuditKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := keylog.NewVerifier(vkey, nil)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := v.Update(audit.Checkpoint, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range audit.Events {
		e, err := v.VerifyInclusion(cp, p.LeafIndex, p.Leaf, p.Inclusion)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Kind.String()+" "+e.ID)
	}
	want := []string{"device-key-added " + phone.id, "device-key-added " + laptop.id, "device-key-approved " + laptop.id,
		"device-key-added dspy"}
	if !slices.Equal(got, want) {
		t.Fatalf("audit = %v, want %v", got, want)
	}
	// The checkpoint is public, for witnesses.
	kl := heraldv1.NewKeyLogServiceClient(g.conn)
	cpResp, err := kl.GetCheckpoint(context.Background(), &heraldv1.GetCheckpointRequest{})
	if err != nil || cpResp.LogPublicKey != vkey {
		t.Fatalf("GetCheckpoint = %v, %v", cpResp, err)
	}
}
