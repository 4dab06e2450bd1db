package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/heraldhq/herald/business"
	"github.com/heraldhq/herald/delivery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// Who may call what, by the method's service.
const (
	messagingPrefix = "/herald.v1.MessagingService/"
	recipientPrefix = "/herald.v1.RecipientService/"
	adminPrefix     = "/herald.v1.AdminService/"
	registerMethod  = recipientPrefix + "RegisterDevice"
)

type ctxKey int

const (
	businessKey ctxKey = iota
	deviceKey
)

// businessFrom is the business an authenticated MessagingService call acts for.
func businessFrom(ctx context.Context) string {
	b, _ := ctx.Value(businessKey).(string)
	return b
}

// deviceFrom is the device an authenticated RecipientService call acts for.
func deviceFrom(ctx context.Context) delivery.Principal {
	p, _ := ctx.Value(deviceKey).(delivery.Principal)
	return p
}

func bearer(ctx context.Context) (string, bool) {
	return bearerOf(metadata.ValueFromIncomingContext(ctx, "authorization"))
}

// bearerOf is the token of an authorization header's values.
func bearerOf(vs []string) (string, bool) {
	if len(vs) != 1 {
		return "", false
	}
	tok, ok := strings.CutPrefix(vs[0], "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(vs[0], "bearer ")
	}
	tok = strings.TrimSpace(tok)
	return tok, ok && tok != ""
}

// authenticate checks the caller's token for method and returns the context the
// handler runs with. Tokens are never logged.
func (s *Server) authenticate(ctx context.Context, method string) (context.Context, error) {
	switch {
	case method == registerMethod:
		return ctx, nil
	case strings.HasPrefix(method, messagingPrefix):
		tok, ok := bearer(ctx)
		if !ok {
			return nil, unauthenticated("missing `authorization: Bearer <api key>` metadata")
		}
		b, err := s.businesses.Authenticate(ctx, tok, s.now())
		if errors.Is(err, business.ErrBadKey) {
			return nil, unauthenticated("invalid or revoked API key")
		}
		if err != nil {
			return nil, s.storeError(ctx, "authenticate", err)
		}
		return context.WithValue(ctx, businessKey, b), nil
	case strings.HasPrefix(method, recipientPrefix):
		tok, ok := bearer(ctx)
		if !ok {
			return nil, unauthenticated("missing `authorization: Bearer <device token>` metadata")
		}
		p, err := s.delivery.Devices().Authenticate(ctx, tok, s.now())
		if err == nil && p.Pending {
			// A pending device does nothing until it is approved, or until its
			// waiting period ended unrefused, which this call may find.
			err = s.delivery.Devices().Activate(ctx, p, s.now())
			p.Pending = false
		}
		var pending *delivery.PendingError
		switch {
		case errors.Is(err, delivery.ErrBadToken):
			return nil, unauthenticated("invalid device token")
		case errors.As(err, &pending):
			return nil, withInfo(codes.FailedPrecondition, fmt.Sprintf("this device waits for approval by one of the "+
				"person's devices; unless refused, it becomes active at %s", pending.Activate.UTC().Format(time.RFC3339)),
				"DEVICE_PENDING")
		case errors.Is(err, delivery.ErrTooManyDevices):
			return nil, withInfo(codes.FailedPrecondition, "the number has the most devices allowed; remove one first",
				"TOO_MANY_DEVICES")
		case err != nil:
			return nil, s.storeError(ctx, "authenticate", err)
		}
		return context.WithValue(ctx, deviceKey, p), nil
	case strings.HasPrefix(method, adminPrefix):
		tok, ok := bearer(ctx)
		if !ok {
			return nil, unauthenticated("missing `authorization: Bearer <admin token>` metadata")
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AdminToken)) != 1 {
			return nil, unauthenticated("invalid admin token")
		}
		return ctx, nil
	}
	// Health and reflection are open, as their clients expect.
	return ctx, nil
}

func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := s.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	identify(ctx)
	return h(ctx, req)
}

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := s.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	identify(ctx)
	return h(srv, &ctxStream{ServerStream: ss, ctx: ctx})
}

// ctxStream carries the authenticated context into a stream handler.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *ctxStream) Context() context.Context { return c.ctx }
