package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/business"
	"github.com/heraldhq/herald/delivery"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/keylog"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// adminService is the operator's AdminService.
type adminService struct {
	*Server
	heraldv1.UnimplementedAdminServiceServer
}

// CreateBusiness creates a business.
func (a *adminService) CreateBusiness(ctx context.Context, req *heraldv1.CreateBusinessRequest) (*heraldv1.CreateBusinessResponse, error) {
	c := &checker{}
	c.text("display_name", req.GetDisplayName(), 1, maxDisplayName)
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	id, err := a.businesses.Create(ctx, req.GetDisplayName(), a.now())
	if err != nil {
		return nil, a.storeError(ctx, "create business", err)
	}
	return &heraldv1.CreateBusinessResponse{BusinessId: id}, nil
}

// GetBusiness shows a business.
func (a *adminService) GetBusiness(ctx context.Context, req *heraldv1.GetBusinessRequest) (*heraldv1.GetBusinessResponse, error) {
	c := &checker{}
	c.id("business_id", req.GetBusinessId())
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	b, err := a.businesses.Get(ctx, req.GetBusinessId())
	if errors.Is(err, business.ErrNotFound) {
		return nil, notFound("no business " + req.GetBusinessId())
	}
	if err != nil {
		return nil, a.storeError(ctx, "get business", err)
	}
	bp := businessProto(b)
	q, err := a.businesses.Quality(ctx, b.ID, a.now(), a.quality)
	if err != nil {
		return nil, a.storeError(ctx, "get business", err)
	}
	bp.Quality = &heraldv1.Quality{Delivered: uint64(q.Delivered), Reports: uint64(q.Reports), ReportRate: q.Rate,
		Threshold: a.quality.Threshold, WindowSeconds: int64(a.quality.Window / time.Second)}
	if !q.LastStepDown.IsZero() {
		bp.Quality.LastStepDownTime = timestamppb.New(q.LastStepDown)
	}
	wh, err := a.webhookState(ctx, b.ID)
	if err != nil {
		return nil, err
	}
	return &heraldv1.GetBusinessResponse{Business: bp, Webhook: wh}, nil
}

func businessProto(b business.Business) *heraldv1.Business {
	return &heraldv1.Business{BusinessId: b.ID, DisplayName: b.DisplayName, CreateTime: timestamppb.New(b.Created),
		ActiveKeyIds: b.ActiveKeys, Limits: &heraldv1.BusinessLimits{MessagesPerSecond: b.Limits.PerSecond,
			Burst: uint32(b.Limits.Burst), DailyUniqueRecipients: uint32(b.Limits.DailyUnique),
			UnlimitedUniqueRecipients: b.Limits.DailyUnique == 0}}
}

// SetBusinessLimits sets a business's limits.
func (a *adminService) SetBusinessLimits(ctx context.Context, req *heraldv1.SetBusinessLimitsRequest) (*heraldv1.SetBusinessLimitsResponse, error) {
	c := &checker{}
	c.id("business_id", req.GetBusinessId())
	if r := req.GetMessagesPerSecond(); !(r >= 0.001 && r <= 1e6) {
		c.bad("messages_per_second", "must be from 0.001 to 1000000, got %v", r)
	}
	if b := req.GetBurst(); b < 1 || b > 1e6 {
		c.bad("burst", "must be from 1 to 1000000, got %d", b)
	}
	if n := req.GetDailyUniqueRecipients(); !req.GetUnlimitedUniqueRecipients() && (n < 1 || n > 1e8) {
		c.bad("daily_unique_recipients", "must be from 1 to 100000000 (or set unlimited_unique_recipients), got %d", n)
	}
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	l := business.Limits{PerSecond: req.GetMessagesPerSecond(), Burst: int(req.GetBurst()), DailyUnique: int(req.GetDailyUniqueRecipients())}
	if req.GetUnlimitedUniqueRecipients() {
		l.DailyUnique = 0
	}
	err := a.businesses.SetLimits(ctx, req.GetBusinessId(), l)
	if errors.Is(err, business.ErrNotFound) {
		return nil, notFound("no business " + req.GetBusinessId())
	}
	if err != nil {
		return nil, a.storeError(ctx, "set business limits", err)
	}
	b, err := a.businesses.Get(ctx, req.GetBusinessId())
	if err != nil {
		return nil, a.storeError(ctx, "set business limits", err)
	}
	return &heraldv1.SetBusinessLimitsResponse{Business: businessProto(b)}, nil
}

// IssueApiKey issues a key for a business.
func (a *adminService) IssueApiKey(ctx context.Context, req *heraldv1.IssueApiKeyRequest) (*heraldv1.IssueApiKeyResponse, error) {
	c := &checker{}
	c.id("business_id", req.GetBusinessId())
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	key, id, err := a.businesses.IssueKey(ctx, req.GetBusinessId(), a.now())
	if errors.Is(err, business.ErrNotFound) {
		return nil, notFound("no business " + req.GetBusinessId())
	}
	if err != nil {
		return nil, a.storeError(ctx, "issue api key", err)
	}
	return &heraldv1.IssueApiKeyResponse{ApiKey: key, KeyId: id}, nil
}

// RevokeApiKey revokes a key by id or by the key itself.
func (a *adminService) RevokeApiKey(ctx context.Context, req *heraldv1.RevokeApiKeyRequest) (*heraldv1.RevokeApiKeyResponse, error) {
	c := &checker{}
	id := req.GetKeyId()
	switch {
	case id != "" && req.GetApiKey() != "":
		c.bad("key_id", "give key_id or api_key, not both")
	case id != "":
		c.id("key_id", id)
	case req.GetApiKey() != "":
		if id = business.KeyID(req.GetApiKey()); id == "" {
			c.bad("api_key", "not an API key")
		}
	default:
		c.bad("key_id", "required: key_id or api_key")
	}
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	err := a.businesses.RevokeKey(ctx, id, a.now())
	if errors.Is(err, business.ErrNoSuchKey) {
		return nil, notFound("no API key " + id)
	}
	if err != nil {
		return nil, a.storeError(ctx, "revoke api key", err)
	}
	return &heraldv1.RevokeApiKeyResponse{}, nil
}

// IssueVerificationCode issues a one-time code for RegisterDevice.
func (a *adminService) IssueVerificationCode(ctx context.Context, req *heraldv1.IssueVerificationCodeRequest) (*heraldv1.IssueVerificationCodeResponse, error) {
	c := &checker{}
	e164 := c.phone("phone_number", req.GetPhoneNumber())
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	code, exp, err := a.delivery.Devices().IssueCode(ctx, a.uid(e164), a.now())
	var wait *delivery.WaitError
	if errors.As(err, &wait) {
		return nil, exhaustedFor(fmt.Sprintf("the number has had %d codes in the last %v, the most allowed; retry after "+
			"the RetryInfo delay", delivery.CodeIssues, delivery.CodeWindow), wait.Wait, "TOO_MANY_CODES")
	}
	if err != nil {
		return nil, a.storeError(ctx, "issue verification code", err)
	}
	return &heraldv1.IssueVerificationCodeResponse{Code: code, ExpireTime: timestamppb.New(exp)}, nil
}

// ReplaceSigningKey sets a business's signing key in place of keys it lost: the
// operator's act, which every device that trusted an earlier key sees as a key change.
func (a *adminService) ReplaceSigningKey(ctx context.Context, req *heraldv1.ReplaceSigningKeyRequest) (*heraldv1.ReplaceSigningKeyResponse, error) {
	c := &checker{}
	c.id("business_id", req.GetBusinessId())
	c.signingKey("public_key", req.GetPublicKey())
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	err := a.businesses.ReplaceSigningKey(ctx, req.GetBusinessId(), req.GetPublicKey())
	switch {
	case errors.Is(err, business.ErrNotFound):
		return nil, notFound("no business " + req.GetBusinessId())
	case err != nil:
		return nil, a.signingKeyError(ctx, "replace signing key", err)
	}
	a.log.Info("signing key replaced by the operator", "business_id", req.GetBusinessId(), "key_id", e2e.KeyID(req.GetPublicKey()))
	a.noteBusinessKey(ctx, keylog.BusinessKeyReplaced, req.GetBusinessId(), req.GetPublicKey())
	return &heraldv1.ReplaceSigningKeyResponse{KeyId: e2e.KeyID(req.GetPublicKey())}, nil
}
