package server

import (
	"context"
	"errors"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/webhook"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// SetWebhook makes a URL the business's webhook.
func (s *Server) SetWebhook(ctx context.Context, req *heraldv1.SetWebhookRequest) (*heraldv1.SetWebhookResponse, error) {
	if webhook.CheckURL(req.GetUrl()) != nil {
		return nil, invalid([]*violation{badField("url", "must be an https:// URL of at most 2048 bytes, without credentials")})
	}
	secret, err := s.webhooks.Set(ctx, businessFrom(ctx), req.GetUrl(), s.now())
	if err != nil {
		return nil, s.storeError(ctx, "set webhook", err)
	}
	return &heraldv1.SetWebhookResponse{Secret: secret}, nil
}

// RotateWebhookSecret gives the business's webhook a new secret.
func (s *Server) RotateWebhookSecret(ctx context.Context, _ *heraldv1.RotateWebhookSecretRequest) (*heraldv1.RotateWebhookSecretResponse, error) {
	secret, err := s.webhooks.Rotate(ctx, businessFrom(ctx), s.now())
	if errors.Is(err, webhook.ErrNoWebhook) {
		return nil, notFound("the business has no webhook")
	}
	if err != nil {
		return nil, s.storeError(ctx, "rotate webhook secret", err)
	}
	return &heraldv1.RotateWebhookSecretResponse{Secret: secret}, nil
}

// GetWebhook says how the business's webhook fares.
func (s *Server) GetWebhook(ctx context.Context, _ *heraldv1.GetWebhookRequest) (*heraldv1.GetWebhookResponse, error) {
	w, err := s.webhookState(ctx, businessFrom(ctx))
	if err != nil {
		return nil, err
	}
	if w == nil {
		return nil, notFound("the business has no webhook")
	}
	return &heraldv1.GetWebhookResponse{Webhook: w}, nil
}

// DeleteWebhook stops the business's webhook.
func (s *Server) DeleteWebhook(ctx context.Context, _ *heraldv1.DeleteWebhookRequest) (*heraldv1.DeleteWebhookResponse, error) {
	if err := s.webhooks.Delete(ctx, businessFrom(ctx)); err != nil {
		return nil, s.storeError(ctx, "delete webhook", err)
	}
	return &heraldv1.DeleteWebhookResponse{}, nil
}

// webhookState is a business's webhook as the API shows it; nil if it has none.
func (s *Server) webhookState(ctx context.Context, business string) (*heraldv1.Webhook, error) {
	st, err := s.webhooks.Get(ctx, business)
	if errors.Is(err, webhook.ErrNoWebhook) {
		return nil, nil
	}
	if err != nil {
		return nil, s.storeError(ctx, "get webhook", err)
	}
	w := &heraldv1.Webhook{Url: st.URL, Delivered: st.Delivered, Attempts: int32(st.Attempts), LastError: st.LastError}
	if !st.FailingSince.IsZero() {
		w.FailingSince = timestamppb.New(st.FailingSince)
		w.NextAttemptTime = timestamppb.New(st.NextAttempt)
	}
	if !st.GaveUp.IsZero() {
		w.GiveUpTime = timestamppb.New(st.GaveUp)
	}
	return w, nil
}
