package server

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/business"
	"github.com/heraldhq/herald/delivery"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/keylog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// recipientService is the RecipientService: a person's device.
type recipientService struct {
	*Server
	heraldv1.UnimplementedRecipientServiceServer
}

var kindProto = map[string]heraldv1.Kind{}

func init() {
	for k, v := range kinds {
		kindProto[v.name] = k
	}
}

var categoryProto = map[string]heraldv1.Category{
	string(blocklist.Transactional): heraldv1.Category_CATEGORY_TRANSACTIONAL,
	string(blocklist.Marketing):     heraldv1.Category_CATEGORY_MARKETING,
}

// RegisterDevice spends a verification code and registers the device's public key.
func (r *recipientService) RegisterDevice(ctx context.Context, req *heraldv1.RegisterDeviceRequest) (*heraldv1.RegisterDeviceResponse, error) {
	c := &checker{}
	e164 := c.phone("phone_number", req.GetPhoneNumber())
	if req.GetCode() == "" {
		c.bad("code", "required: the one-time code issued for this number")
	} else if len(req.GetCode()) > 16 {
		c.bad("code", "too long")
	}
	c.publicKey(req.GetPublicKey(), req.GetKeyAlgorithm())
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	peer := peerHost(ctx)
	if ok, wait := r.guesses.allowed(peer, r.now()); !ok {
		r.log.WarnContext(ctx, "verification refused: too many wrong codes from this client", "peer", peer)
		return nil, exhaustedFor("too many wrong verification codes from this client; retry after the RetryInfo delay",
			wait, "TOO_MANY_GUESSES")
	}
	reg, err := r.delivery.Devices().Register(ctx, r.uid(e164), req.GetCode(), req.GetPublicKey(), int(req.GetKeyAlgorithm()), r.now())
	var wait *delivery.WaitError
	switch {
	case errors.Is(err, delivery.ErrNoCode), errors.Is(err, delivery.ErrBadCode):
		// Neither the number nor the code is logged; the uid would name the person
		// across lines, so it is not either.
		r.guesses.failed(peer, r.now())
		left := -1
		var bad *delivery.BadCodeError
		if errors.As(err, &bad) {
			left = bad.Left
		}
		r.log.WarnContext(ctx, "verification failed", "peer", peer, "reason", verificationReason(err),
			"tries_left_for_number", left)
		return nil, withInfo(codes.PermissionDenied, "the verification code is wrong or expired", "BAD_VERIFICATION_CODE")
	case errors.As(err, &wait):
		r.guesses.failed(peer, r.now())
		r.log.WarnContext(ctx, "verification refused: the number was offered too many wrong codes", "peer", peer)
		return nil, exhaustedFor("too many wrong verification codes for this number: no code is taken until the "+
			"RetryInfo delay has passed", wait.Wait, "TOO_MANY_GUESSES")
	case errors.Is(err, delivery.ErrTooManyDevices):
		return nil, withInfo(codes.FailedPrecondition, fmt.Sprintf("the number has %d devices, the most allowed", delivery.MaxDevices), "TOO_MANY_DEVICES")
	case err != nil:
		return nil, r.storeError(ctx, "register device", err)
	}
	r.noteDeviceKey(ctx, keylog.DeviceKeyAdded, r.uid(e164), reg.DeviceID, int(req.GetKeyAlgorithm()), req.GetPublicKey())
	resp := &heraldv1.RegisterDeviceResponse{DeviceId: reg.DeviceID, DeviceToken: reg.Token,
		KeyId: e2e.KeyID(req.GetPublicKey()), Pending: reg.Pending}
	if reg.Pending {
		resp.ActivateTime = timestamppb.New(reg.Activate)
	}
	return resp, nil
}

// verificationReason says, for the log, why a code was refused.
func verificationReason(err error) string {
	if errors.Is(err, delivery.ErrNoCode) {
		return "no code issued, or it expired"
	}
	return "wrong code"
}

// Receive streams the device's deliveries.
func (r *recipientService) Receive(_ *heraldv1.ReceiveRequest, stream grpc.ServerStreamingServer[heraldv1.ReceiveResponse]) error {
	p := deviceFrom(stream.Context())
	ctx, cancel := r.streamContext(stream.Context())
	defer cancel()
	err := r.delivery.Mailboxes().Stream(ctx, p, func(d delivery.Delivery) error {
		prof, err := r.businesses.ProfileFor(ctx, d.Business, d.SigningKeyID, r.now())
		if err != nil && !errors.Is(err, business.ErrNotFound) {
			return err
		}
		chain := prof.SigningKeyChain(d.SigningKeyID)
		dl := &heraldv1.Delivery{MessageId: d.MessageID, BusinessId: d.Business,
			BusinessDisplayName: prof.DisplayName, Category: categoryProto[d.Category], Kind: kindProto[d.Kind],
			SentTime: timestamppb.New(d.Sent), ExpireTime: timestamppb.New(d.Expires), Ciphertext: d.Ciphertext,
			ClientMessageId: d.ClientMessageID, Body: d.Body, KeyId: d.KeyID, BusinessKeyChain: chainProto(chain)}
		if len(chain) > 0 {
			dl.BusinessSigningKey = chain[0].PublicKey
			if r.keyLog != nil {
				// Without a proof the device keeps the delivery queued and shows
				// nothing; a later Receive brings the proof.
				if dl.BusinessKeyProof, dl.KeyLogCheckpoint, err = r.businessKeyProof(ctx, d.Business, chain[0].PublicKey); err != nil {
					r.log.WarnContext(ctx, "no key log proof for a business key; the delivery goes without", "business_id", d.Business, "err", err)
				}
			}
		}
		return stream.Send(&heraldv1.ReceiveResponse{Item: &heraldv1.ReceiveResponse_Delivery{Delivery: dl}})
	}, func(n delivery.Notice) error {
		return stream.Send(&heraldv1.ReceiveResponse{Item: &heraldv1.ReceiveResponse_Notice{Notice: noticeProto(n)}})
	})
	if errors.Is(err, delivery.ErrBadToken) {
		return unauthenticated("this device was removed")
	}
	if err != nil && stream.Context().Err() == nil {
		return r.storeError(ctx, "receive", err)
	}
	return nil
}

// chainProto is a signing key's chain as deliveries carry it.
func chainProto(chain []business.KeyLink) []*heraldv1.SigningKeyLink {
	links := make([]*heraldv1.SigningKeyLink, len(chain))
	for i, l := range chain {
		links[i] = &heraldv1.SigningKeyLink{PublicKey: l.PublicKey, Endorsement: l.Endorsement,
			EndorsedByKeyId: l.EndorsedBy, Replaced: l.Replaced}
	}
	return links
}

// Ack acknowledges deliveries. Ids of another person's messages are
// PERMISSION_DENIED, and nothing is changed.
func (r *recipientService) Ack(ctx context.Context, req *heraldv1.AckRequest) (*heraldv1.AckResponse, error) {
	p := deviceFrom(ctx)
	c := &checker{}
	ids, rejections := req.GetMessageIds(), req.GetRejections()
	switch n := len(ids) + len(rejections) + len(req.GetNoticeIds()); {
	case n == 0:
		c.bad("message_ids", "required: 1 to %d message ids, rejections and notice ids together", maxAckIDs)
	case n > maxAckIDs:
		c.bad("message_ids", "at most %d message ids and rejections together, got %d", maxAckIDs, n)
	}
	if n := len(req.GetNoticeIds()); n > maxAckIDs {
		c.bad("notice_ids", "at most %d notice ids, got %d", maxAckIDs, n)
	}
	for i, id := range req.GetNoticeIds() {
		if !noticeID.MatchString(id) {
			c.bad(fmt.Sprintf("notice_ids[%d]", i), "not a notice id")
		}
	}
	foreign := false
	mine := func(field, id string) {
		switch uid, ok := keys.MessageUID(id); {
		case !ok:
			c.bad(field, "not a message id")
		case uid != p.UID:
			foreign = true
		}
	}
	var refused []delivery.Rejection
	if len(c.vs) == 0 {
		for i, id := range ids {
			mine(fmt.Sprintf("message_ids[%d]", i), id)
		}
		for i, rj := range rejections {
			mine(fmt.Sprintf("rejections[%d].message_id", i), rj.GetMessageId())
			reason, ok := rejectReasons[rj.GetReason()]
			if !ok {
				c.bad(fmt.Sprintf("rejections[%d].reason", i), "required: why the device refused the delivery")
			}
			refused = append(refused, delivery.Rejection{MessageID: rj.GetMessageId(), Reason: reason})
		}
	}
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	if foreign {
		return nil, permissionDenied("a message id belongs to another person's mailbox")
	}
	var unknown []string
	if len(ids) > 0 {
		u, err := r.delivery.Mailboxes().Ack(ctx, p, ids, req.GetRead())
		if err != nil {
			return nil, r.storeError(ctx, "ack", err)
		}
		unknown = u
	}
	if len(refused) > 0 {
		u, err := r.delivery.Mailboxes().Reject(ctx, p, refused)
		if err != nil {
			return nil, r.storeError(ctx, "ack", err)
		}
		unknown = append(unknown, u...)
	}
	if err := r.delivery.Devices().AckNotices(ctx, p, req.GetNoticeIds()); err != nil {
		return nil, r.storeError(ctx, "ack", err)
	}
	return &heraldv1.AckResponse{UnknownMessageIds: unknown}, nil
}

// rejectReasons are the reasons a device may give for refusing a delivery, as stored.
var rejectReasons = map[heraldv1.RejectReason]string{
	heraldv1.RejectReason_REJECT_REASON_BAD_SIGNATURE:   keys.RejectBadSignature,
	heraldv1.RejectReason_REJECT_REASON_UNKNOWN_KEY:     keys.RejectUnknownKey,
	heraldv1.RejectReason_REJECT_REASON_CANNOT_DECRYPT:  keys.RejectCannotDecrypt,
	heraldv1.RejectReason_REJECT_REASON_HEADER_MISMATCH: keys.RejectHeaderMismatch,
	heraldv1.RejectReason_REJECT_REASON_REPLAY:          keys.RejectReplay,
}

// existingBusiness validates a business id field and checks the business exists.
func (r *recipientService) existingBusiness(ctx context.Context, c *checker, field, id string) error {
	c.id(field, id)
	if len(c.vs) > 0 {
		return invalid(c.vs)
	}
	_, err := r.businesses.Name(ctx, id, r.now())
	if errors.Is(err, business.ErrNotFound) {
		return notFound("no business " + id)
	}
	if err != nil {
		return r.storeError(ctx, "business", err)
	}
	return nil
}

// Block blocks a business; once it returns, no later admission from it succeeds.
func (r *recipientService) Block(ctx context.Context, req *heraldv1.BlockRequest) (*heraldv1.BlockResponse, error) {
	if err := r.existingBusiness(ctx, &checker{}, "business_id", req.GetBusinessId()); err != nil {
		return nil, err
	}
	if err := r.blocklist.Block(ctx, deviceFrom(ctx).UID, req.GetBusinessId(), r.now()); err != nil {
		return nil, r.storeError(ctx, "block", err)
	}
	return &heraldv1.BlockResponse{}, nil
}

// Unblock lifts a block.
func (r *recipientService) Unblock(ctx context.Context, req *heraldv1.UnblockRequest) (*heraldv1.UnblockResponse, error) {
	if err := r.existingBusiness(ctx, &checker{}, "business_id", req.GetBusinessId()); err != nil {
		return nil, err
	}
	if err := r.blocklist.Unblock(ctx, deviceFrom(ctx).UID, req.GetBusinessId(), r.now()); err != nil {
		return nil, r.storeError(ctx, "unblock", err)
	}
	return &heraldv1.UnblockResponse{}, nil
}

// SetConsent records the person's own choice.
func (r *recipientService) SetConsent(ctx context.Context, req *heraldv1.SetConsentRequest) (*heraldv1.SetConsentResponse, error) {
	c := &checker{}
	cat := c.category("category", req.GetCategory())
	v := c.consent("consent", req.GetConsent())
	if err := r.existingBusiness(ctx, c, "business_id", req.GetBusinessId()); err != nil {
		return nil, err
	}
	if err := r.blocklist.SetConsent(ctx, deviceFrom(ctx).UID, req.GetBusinessId(), cat, v, r.now()); err != nil {
		return nil, r.storeError(ctx, "set consent", err)
	}
	return &heraldv1.SetConsentResponse{}, nil
}

// ListPreferences lists the person's businesses and choices.
func (r *recipientService) ListPreferences(ctx context.Context, _ *heraldv1.ListPreferencesRequest) (*heraldv1.ListPreferencesResponse, error) {
	prefs, err := r.blocklist.Preferences(ctx, deviceFrom(ctx).UID)
	if err != nil {
		return nil, r.storeError(ctx, "list preferences", err)
	}
	resp := &heraldv1.ListPreferencesResponse{}
	for _, p := range prefs {
		name, err := r.businesses.Name(ctx, p.Business, r.now())
		if err != nil && !errors.Is(err, business.ErrNotFound) {
			return nil, r.storeError(ctx, "list preferences", err)
		}
		bp := &heraldv1.BusinessPreference{BusinessId: p.Business, DisplayName: name, Blocked: p.Blocked}
		if !p.LastMessage.IsZero() {
			bp.LastMessageTime = timestamppb.New(p.LastMessage)
		}
		for _, cc := range p.Consents {
			pc := &heraldv1.CategoryConsent{Category: categoryProto[string(cc.Category)], Consent: consentProto(cc.Consent),
				Source: cc.Source, Reference: cc.Reference}
			if cc.Consent != "" {
				pc.SetBy = heraldv1.Setter_SETTER_BUSINESS
				if cc.ByRecipient {
					pc.SetBy = heraldv1.Setter_SETTER_RECIPIENT
				}
				pc.UpdateTime = timestamppb.New(cc.At)
			}
			bp.Consents = append(bp.Consents, pc)
		}
		resp.Businesses = append(resp.Businesses, bp)
	}
	return resp, nil
}

// RotateKey replaces the device's public key, once the device proved it holds the
// current one.
func (r *recipientService) RotateKey(ctx context.Context, req *heraldv1.RotateKeyRequest) (*heraldv1.RotateKeyResponse, error) {
	c := &checker{}
	c.publicKey(req.GetPublicKey(), req.GetKeyAlgorithm())
	if len(req.GetChallengeResponse()) == 0 {
		c.bad("challenge_response", "required: the opened GetKeyChallenge challenge")
	}
	exp := req.GetChallengeExpireTime()
	if exp == nil || exp.CheckValid() != nil {
		c.bad("challenge_expire_time", "required: the challenge's expire_time")
	}
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	id, err := r.delivery.Devices().RotateKey(ctx, deviceFrom(ctx), req.GetChallengeResponse(), exp.AsTime(),
		req.GetPublicKey(), int(req.GetKeyAlgorithm()), r.now())
	switch {
	case errors.Is(err, delivery.ErrBadChallenge):
		return nil, permissionDenied("the key challenge's answer is wrong or expired: get a new challenge and open it with the current key")
	case errors.Is(err, delivery.ErrBadToken):
		return nil, unauthenticated("this device was removed")
	case err != nil:
		return nil, r.storeError(ctx, "rotate key", err)
	}
	r.noteDeviceKey(ctx, keylog.DeviceKeyRotated, deviceFrom(ctx).UID, deviceFrom(ctx).DeviceID, int(req.GetKeyAlgorithm()),
		req.GetPublicKey())
	return &heraldv1.RotateKeyResponse{KeyId: id}, nil
}

// GetKeyChallenge seals a challenge to the device's current key.
func (r *recipientService) GetKeyChallenge(ctx context.Context, _ *heraldv1.GetKeyChallengeRequest) (*heraldv1.GetKeyChallengeResponse, error) {
	ch, exp, err := r.delivery.Devices().Challenge(ctx, deviceFrom(ctx), r.now())
	if errors.Is(err, delivery.ErrBadToken) {
		return nil, unauthenticated("this device was removed")
	}
	if err != nil {
		return nil, r.storeError(ctx, "key challenge", err)
	}
	return &heraldv1.GetKeyChallengeResponse{Challenge: ch, ExpireTime: timestamppb.New(exp)}, nil
}

// ListDevices lists the person's devices.
func (r *recipientService) ListDevices(ctx context.Context, _ *heraldv1.ListDevicesRequest) (*heraldv1.ListDevicesResponse, error) {
	p := deviceFrom(ctx)
	devs, err := r.delivery.Devices().List(ctx, p.UID)
	if err != nil {
		return nil, r.storeError(ctx, "list devices", err)
	}
	resp := &heraldv1.ListDevicesResponse{}
	for _, d := range devs {
		info := &heraldv1.DeviceInfo{DeviceId: d.ID, State: heraldv1.DeviceState_DEVICE_STATE_ACTIVE, PublicKey: d.PublicKey,
			KeyAlgorithm: heraldv1.KeyAlgorithm(d.Algorithm), KeyId: d.KeyID, CreateTime: timestamppb.New(d.Created),
			ThisDevice: d.ID == p.DeviceID}
		if d.Pending {
			info.State, info.ActivateTime = heraldv1.DeviceState_DEVICE_STATE_PENDING, timestamppb.New(d.Activate)
		}
		resp.Devices = append(resp.Devices, info)
	}
	return resp, nil
}

// ApproveDevice makes a pending device of the person active.
func (r *recipientService) ApproveDevice(ctx context.Context, req *heraldv1.ApproveDeviceRequest) (*heraldv1.ApproveDeviceResponse, error) {
	c := &checker{}
	c.id("device_id", req.GetDeviceId())
	if !validKeyID(req.GetKeyId()) {
		c.bad("key_id", "required: the id of the key whose code the person compared")
	}
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	switch err := r.delivery.Devices().Approve(ctx, deviceFrom(ctx), req.GetDeviceId(), req.GetKeyId(), r.now()); {
	case errors.Is(err, delivery.ErrNoSuchDevice):
		return nil, notFound("no pending device " + req.GetDeviceId() + " of this person")
	case errors.Is(err, delivery.ErrKeyMismatch):
		return nil, withInfo(codes.FailedPrecondition, "the pending device's key is not "+req.GetKeyId()+
			": compare the codes again", "KEY_MISMATCH")
	case errors.Is(err, delivery.ErrTooManyDevices):
		return nil, withInfo(codes.FailedPrecondition, fmt.Sprintf("the number has %d devices, the most allowed; remove one first",
			delivery.MaxDevices), "TOO_MANY_DEVICES")
	case errors.Is(err, delivery.ErrBadToken):
		return nil, unauthenticated("this device was removed")
	case err != nil:
		return nil, r.storeError(ctx, "approve device", err)
	}
	r.noteDevice(ctx, keylog.DeviceKeyApproved, req.GetDeviceId())
	return &heraldv1.ApproveDeviceResponse{}, nil
}

// RemoveDevice removes one of the person's devices.
func (r *recipientService) RemoveDevice(ctx context.Context, req *heraldv1.RemoveDeviceRequest) (*heraldv1.RemoveDeviceResponse, error) {
	c := &checker{}
	c.id("device_id", req.GetDeviceId())
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	// The key log names the key that goes: read it first.
	gone, _ := r.deviceOf(ctx, req.GetDeviceId())
	switch err := r.delivery.Devices().Remove(ctx, deviceFrom(ctx), req.GetDeviceId(), r.now()); {
	case errors.Is(err, delivery.ErrNoSuchDevice):
		return nil, notFound("no device " + req.GetDeviceId() + " of this person")
	case errors.Is(err, delivery.ErrBadToken):
		return nil, unauthenticated("this device was removed")
	case err != nil:
		return nil, r.storeError(ctx, "remove device", err)
	}
	if gone.ID != "" {
		r.noteDeviceKey(ctx, keylog.DeviceKeyRemoved, deviceFrom(ctx).UID, gone.ID, gone.Algorithm, gone.PublicKey)
	}
	return &heraldv1.RemoveDeviceResponse{}, nil
}

// deviceOf reads one of the caller's person's devices, active or pending; a zero
// Device if there is none.
func (r *recipientService) deviceOf(ctx context.Context, id string) (delivery.Device, error) {
	if r.keyLog == nil {
		return delivery.Device{}, nil
	}
	devs, err := r.delivery.Devices().List(ctx, deviceFrom(ctx).UID)
	if err != nil {
		return delivery.Device{}, err
	}
	for _, d := range devs {
		if d.ID == id {
			return d, nil
		}
	}
	return delivery.Device{}, nil
}

// noteDevice logs a key event of one of the caller's person's devices, as it is now.
func (r *recipientService) noteDevice(ctx context.Context, kind keylog.Kind, id string) {
	if r.keyLog == nil {
		return
	}
	d, err := r.deviceOf(ctx, id)
	if err != nil || d.ID == "" {
		r.log.WarnContext(ctx, "key log append skipped: the device could not be read; the next lookup logs its key", "err", err)
		return
	}
	r.noteDeviceKey(ctx, kind, deviceFrom(ctx).UID, d.ID, d.Algorithm, d.PublicKey)
}

// noticeID is the form of a notice id (a Redis stream id).
var noticeID = regexp.MustCompile(`^[0-9]{1,20}-[0-9]{1,20}$`)

var noticeEvents = map[string]heraldv1.DeviceEvent{
	keys.NoticePending:    heraldv1.DeviceEvent_DEVICE_EVENT_PENDING,
	keys.NoticeApproved:   heraldv1.DeviceEvent_DEVICE_EVENT_APPROVED,
	keys.NoticeActivated:  heraldv1.DeviceEvent_DEVICE_EVENT_ACTIVATED,
	keys.NoticeRemoved:    heraldv1.DeviceEvent_DEVICE_EVENT_REMOVED,
	keys.NoticeKeyRotated: heraldv1.DeviceEvent_DEVICE_EVENT_KEY_ROTATED,
}

func noticeProto(n delivery.Notice) *heraldv1.DeviceNotice {
	out := &heraldv1.DeviceNotice{NoticeId: n.ID, Event: noticeEvents[n.Event], DeviceId: n.DeviceID, PublicKey: n.PublicKey,
		KeyAlgorithm: heraldv1.KeyAlgorithm(n.Algorithm), KeyId: n.KeyID, Time: timestamppb.New(n.Time), ByDeviceId: n.By}
	if !n.Activate.IsZero() {
		out.ActivateTime = timestamppb.New(n.Activate)
	}
	return out
}

var reportReasons = map[heraldv1.ReportReason]string{
	heraldv1.ReportReason_REPORT_REASON_SPAM:                "spam",
	heraldv1.ReportReason_REPORT_REASON_MISLABELED_CATEGORY: "mislabeled",
}

// ReportSpam records a report against the sender; past the operator's threshold the
// sender's limits step down a tier.
func (r *recipientService) ReportSpam(ctx context.Context, req *heraldv1.ReportSpamRequest) (*heraldv1.ReportSpamResponse, error) {
	p := deviceFrom(ctx)
	c := &checker{}
	uid, ok := keys.MessageUID(req.GetMessageId())
	if !ok {
		c.bad("message_id", "not a message id")
	}
	reason, ok := reportReasons[req.GetReason()]
	if !ok {
		c.bad("reason", "required: REPORT_REASON_SPAM or REPORT_REASON_MISLABELED_CATEGORY")
	}
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	if uid != p.UID {
		return nil, permissionDenied("the message belongs to another person's mailbox")
	}
	biz, err := r.delivery.Mailboxes().Report(ctx, p, req.GetMessageId(), reason)
	if errors.Is(err, delivery.ErrNotDelivered) {
		return nil, notFound("no message " + req.GetMessageId() + " for this device")
	}
	if err != nil {
		return nil, r.storeError(ctx, "report", err)
	}
	if biz == "" {
		return &heraldv1.ReportSpamResponse{}, nil // reported before: counted once
	}
	stepped, err := r.businesses.Report(ctx, biz, r.now(), r.quality)
	if err != nil {
		return nil, r.storeError(ctx, "report", err)
	}
	if stepped {
		r.log.Info("business limits stepped down after reports", "business", biz)
	}
	return &heraldv1.ReportSpamResponse{}, nil
}
