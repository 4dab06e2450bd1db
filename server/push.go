package server

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/heraldhq/herald/delivery"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/push"
	"github.com/heraldhq/herald/webhook"
	"google.golang.org/grpc/codes"
)

// pushers are the push services of cfg, by the service letter endpoints are stored
// with, each answering delivery.ErrPushGone for an endpoint that is gone.
func pushers(cfg Config) map[string]delivery.Pusher {
	out := map[string]delivery.Pusher{}
	if cfg.WebPush != nil {
		out[keys.PushWeb] = gonePusher{cfg.WebPush}
	}
	if cfg.FCM != nil {
		out[keys.PushFCM] = gonePusher{cfg.FCM}
	}
	if cfg.APNs != nil {
		out[keys.PushAPNs] = gonePusher{cfg.APNs}
	}
	return out
}

// gonePusher turns push.ErrGone into delivery.ErrPushGone.
type gonePusher struct{ s push.Sender }

func (g gonePusher) Wake(ctx context.Context, to string) error {
	err := g.s.Wake(ctx, to)
	if errors.Is(err, push.ErrGone) {
		return fmt.Errorf("%w: %w", delivery.ErrPushGone, err)
	}
	return err
}

var (
	fcmToken  = regexp.MustCompile(`^[A-Za-z0-9_:\-]+$`)
	apnsToken = regexp.MustCompile(`^[0-9a-fA-F]+$`)
)

// validToken checks a push service's device token: its characters, and a length a
// real token has (FCM's are about 160, APNs' 64 hex digits today).
func validToken(re *regexp.Regexp, tok string, min, max int) bool {
	return len(tok) >= min && len(tok) <= max && re.MatchString(tok)
}

// SetPushEndpoint records where the device is woken.
func (r *recipientService) SetPushEndpoint(ctx context.Context, req *heraldv1.SetPushEndpointRequest) (*heraldv1.SetPushEndpointResponse, error) {
	var ep keys.PushEndpoint
	c := &checker{}
	switch e := req.GetEndpoint().(type) {
	case *heraldv1.SetPushEndpointRequest_WebPushEndpoint:
		// The same rules as a webhook's URL: https, a host, no credentials.
		if webhook.CheckURL(e.WebPushEndpoint) != nil {
			c.bad("web_push_endpoint", "must be an https:// URL of at most 2048 bytes")
		}
		ep = keys.PushEndpoint{Service: keys.PushWeb, Address: e.WebPushEndpoint}
	case *heraldv1.SetPushEndpointRequest_FcmToken:
		if !validToken(fcmToken, e.FcmToken, 20, 4096) {
			c.bad("fcm_token", "not an FCM registration token")
		}
		ep = keys.PushEndpoint{Service: keys.PushFCM, Address: e.FcmToken}
	case *heraldv1.SetPushEndpointRequest_ApnsToken:
		if !validToken(apnsToken, e.ApnsToken, 32, 200) {
			c.bad("apns_token", "not an APNs device token (hex)")
		}
		ep = keys.PushEndpoint{Service: keys.PushAPNs, Address: e.ApnsToken}
	default:
		c.bad("endpoint", "required: web_push_endpoint, fcm_token or apns_token")
	}
	if len(c.vs) > 0 {
		return nil, invalid(c.vs)
	}
	if _, ok := pushers(r.cfg)[ep.Service]; !ok {
		return nil, withInfo(codes.FailedPrecondition, "this gateway does not wake devices through that push service "+
			"(GetPushConfig says which it does)", "PUSH_SERVICE_OFF")
	}
	if err := r.delivery.Devices().SetPushEndpoint(ctx, deviceFrom(ctx), ep); err != nil {
		return nil, r.storeError(ctx, "set push endpoint", err)
	}
	return &heraldv1.SetPushEndpointResponse{}, nil
}

// DeletePushEndpoint stops the device's wake-ups.
func (r *recipientService) DeletePushEndpoint(ctx context.Context, _ *heraldv1.DeletePushEndpointRequest) (*heraldv1.DeletePushEndpointResponse, error) {
	if err := r.delivery.Devices().DeletePushEndpoint(ctx, deviceFrom(ctx)); err != nil {
		return nil, r.storeError(ctx, "delete push endpoint", err)
	}
	return &heraldv1.DeletePushEndpointResponse{}, nil
}

// GetPushConfig says which push services the gateway wakes through.
func (r *recipientService) GetPushConfig(context.Context, *heraldv1.GetPushConfigRequest) (*heraldv1.GetPushConfigResponse, error) {
	resp := &heraldv1.GetPushConfigResponse{WebPush: r.cfg.WebPush != nil, Fcm: r.cfg.FCM != nil, Apns: r.cfg.APNs != nil}
	if r.cfg.WebPush != nil {
		resp.VapidPublicKey = r.cfg.WebPush.PublicKey()
	}
	return resp, nil
}
