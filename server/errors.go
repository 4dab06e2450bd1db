package server

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// errorDomain is the ErrorInfo domain of Herald's errors.
const errorDomain = "herald.heraldhq.dev"

// violation is one invalid field.
type violation = errdetails.BadRequest_FieldViolation

func badField(field, description string) *violation {
	return &violation{Field: field, Description: description}
}

// invalid is INVALID_ARGUMENT with a BadRequest naming every bad field.
func invalid(vs []*violation) error {
	msg := "invalid " + vs[0].Field + ": " + vs[0].Description
	if len(vs) > 1 {
		msg += " (and more, see details)"
	}
	st, _ := status.New(codes.InvalidArgument, msg).WithDetails(&errdetails.BadRequest{FieldViolations: vs})
	return st.Err()
}

func withInfo(c codes.Code, msg, reason string) error {
	st, _ := status.New(c, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain})
	return st.Err()
}

func unauthenticated(msg string) error {
	return withInfo(codes.Unauthenticated, msg, "UNAUTHENTICATED")
}

func permissionDenied(msg string) error {
	return withInfo(codes.PermissionDenied, msg, "PERMISSION_DENIED")
}

func notFound(msg string) error {
	return withInfo(codes.NotFound, msg, "NOT_FOUND")
}

// exhausted is RESOURCE_EXHAUSTED with a RetryInfo saying when a retry can succeed.
func exhausted(msg string, retry time.Duration) error {
	st, _ := status.New(codes.ResourceExhausted, msg).WithDetails(
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)},
		&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: errorDomain})
	return st.Err()
}

// storeError turns an error from a store into a status: Redis unreachable (or
// anything unexpected from it) is UNAVAILABLE, so callers retry and nothing is assumed
// done; a script error is a bug (INTERNAL).
func (s *Server) storeError(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, op+": canceled")
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return status.Error(codes.DeadlineExceeded, op+": deadline exceeded")
	}
	var re redis.Error
	if errors.As(err, &re) && !isTransient(re) {
		s.log.Error("storage error", "op", op, "err", err)
		return status.Error(codes.Internal, op+": internal error")
	}
	s.log.Warn("storage unavailable", "op", op, "err", err)
	return withInfo(codes.Unavailable, op+": storage unavailable, nothing was done; retry", "STORAGE_UNAVAILABLE")
}

// isTransient reports Redis replies that mean "not now" rather than "wrong".
func isTransient(err redis.Error) bool {
	msg := err.Error()
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "MOVED", "ASK", "OOM"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
