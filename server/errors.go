package server

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/heraldhq/herald/admission"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// exhausted is RESOURCE_EXHAUSTED over a rate, with a RetryInfo saying when a retry
// can succeed.
func exhausted(msg string, retry time.Duration) error {
	return exhaustedFor(msg, retry, "RATE_LIMITED")
}

// storeError turns an error from a store into a status: Redis unreachable (or
// anything unexpected from it) is UNAVAILABLE, so callers retry; a script error is a
// bug (INTERNAL). It claims nothing about what was done: the call may have taken
// effect before Redis failed (sendError says more for Send).
func (s *Server) storeError(ctx context.Context, op string, err error) error {
	return s.unavailable(ctx, op, err, "storage unavailable; retry", "STORAGE_UNAVAILABLE")
}

// sendError is storeError for Send and SendBatch, which can say what the business
// may assume: nothing was admitted when Redis failed before the admission scripts
// were called (admission.ErrOutcomeUnknown tells), and otherwise that the outcome is
// unknown and a retry with the same
// client_message_id is safe (it returns the message id of a message admitted before).
func (s *Server) sendError(ctx context.Context, err error) error {
	if errors.Is(err, admission.ErrOutcomeUnknown) {
		return s.unavailable(ctx, "send", err, "storage failed after messages may have been admitted, so the outcome "+
			"is unknown; a retry with the same client_message_id is safe and returns the message id of one admitted",
			"OUTCOME_UNKNOWN")
	}
	return s.unavailable(ctx, "send", err, "storage unavailable, nothing was admitted; retry", "STORAGE_UNAVAILABLE")
}

func (s *Server) unavailable(ctx context.Context, op string, err error, msg, reason string) error {
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, op+": canceled")
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return status.Error(codes.DeadlineExceeded, op+": deadline exceeded")
	}
	var re redis.Error
	if errors.As(err, &re) && !isTransient(re) {
		s.log.Error("storage error", "op", op, "err", err)
		if reason != "OUTCOME_UNKNOWN" {
			return status.Error(codes.Internal, op+": internal error")
		}
		// Whatever Redis refused, messages may have been admitted before it did: the
		// caller must hear that, and that a retry is safe, not "internal error".
	}
	s.log.Warn("storage unavailable", "op", op, "reason", reason, "err", err)
	return withInfo(codes.Unavailable, op+": "+msg, reason)
}

// isTransient reports Redis replies that mean "not now" rather than "wrong".
func isTransient(err redis.Error) bool {
	msg := err.Error()
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "MOVED", "ASK", "OOM",
		"NOREPLICAS", "ERR max number of clients"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
