package client

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RejectedError is a message the gateway refused by policy (or, for a lookup, would
// refuse): the recipient blocked the business, opted out, is over a cap, has no
// device, and so on. Nothing was delivered.
type RejectedError struct {
	// Recipient is the phone number as the caller gave it.
	Recipient string
	// Outcome says why: OUTCOME_BLOCKED, OUTCOME_NOT_OPTED_IN, OUTCOME_OPTED_OUT,
	// OUTCOME_UNKNOWN_RECIPIENT, OUTCOME_STALE_DEVICES (still stale after Send's one
	// refresh), OUTCOME_RECIPIENT_CAPPED, OUTCOME_NEW_RECIPIENT_LIMITED (RecordConsent
	// too) or OUTCOME_QUOTA_EXCEEDED (the business's messages in flight hold its
	// quota of bytes: room comes back as they are delivered or expire).
	Outcome heraldv1.Outcome
	// RetryAfter is, for OUTCOME_RECIPIENT_CAPPED and OUTCOME_NEW_RECIPIENT_LIMITED,
	// the wait after which the same message can be admitted; 0 otherwise. The SDK does
	// not wait for these itself: they can be hours, and are the caller's to schedule.
	RetryAfter time.Duration
	// MissingDeviceIDs, UnknownDeviceIDs and RetiredKeyDeviceIDs explain
	// OUTCOME_STALE_DEVICES: devices of the recipient that had no envelope, envelopes
	// for devices the recipient does not have, and devices whose key was rotated since
	// the lookup.
	MissingDeviceIDs    []string
	UnknownDeviceIDs    []string
	RetiredKeyDeviceIDs []string
}

func (e *RejectedError) Error() string {
	s := fmt.Sprintf("herald: message to %s rejected: %s", e.Recipient, strings.TrimPrefix(e.Outcome.String(), "OUTCOME_"))
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return s
}

func rejected(recipient string, r *heraldv1.Result) *RejectedError {
	return &RejectedError{Recipient: recipient, Outcome: r.GetOutcome(), RetryAfter: r.GetRetryAfter().AsDuration(),
		MissingDeviceIDs: r.GetMissingDeviceIds(), UnknownDeviceIDs: r.GetUnknownDeviceIds(),
		RetiredKeyDeviceIDs: r.GetRetiredKeyDeviceIds()}
}

// RateLimitedError is the business over its rate: RESOURCE_EXHAUSTED from a call, or
// OUTCOME_RATE_LIMITED for a broadcast's recipient, still so after the retries that
// WithRetry allows (or with a wait that would outlast the context's deadline).
type RateLimitedError struct {
	// Op names the call, e.g. "send".
	Op string
	// RetryAfter is the gateway's last word on when a retry can succeed.
	RetryAfter time.Duration
	// Err is the gRPC status error, or nil for a batch result.
	Err error
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("herald: %s: over the business's rate limit; retry after %s", e.Op, e.RetryAfter)
}

func (e *RateLimitedError) Unwrap() error { return e.Err }

// Violation is one invalid field of a request.
type Violation struct {
	// Field is the path of the field, e.g. "message.recipient".
	Field string
	// Description says what is wrong with it.
	Description string
}

// InvalidArgumentError is a request the gateway refused as invalid
// (INVALID_ARGUMENT, or OUTCOME_INVALID for one entry of a batch). Retrying it
// unchanged fails again.
type InvalidArgumentError struct {
	// Op names the call.
	Op string
	// Violations names each bad field.
	Violations []Violation
	// Err is the gRPC status error, or nil for a batch result.
	Err error
}

func (e *InvalidArgumentError) Error() string {
	if len(e.Violations) == 0 {
		if e.Err != nil {
			return fmt.Sprintf("herald: %s: invalid argument: %s", e.Op, status.Convert(e.Err).Message())
		}
		return fmt.Sprintf("herald: %s: invalid argument", e.Op)
	}
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return fmt.Sprintf("herald: %s: invalid %s", e.Op, strings.Join(parts, "; "))
}

func (e *InvalidArgumentError) Unwrap() error { return e.Err }

// UnavailableError is the gateway (or its Redis) unreachable, still so after the
// retries WithRetry allows. A Send repeated later with the same client message id
// (WithClientMessageID) is safe: a message the gateway admitted before it failed comes
// back as a duplicate with its message id, never delivered twice. A Send without
// WithClientMessageID gets a fresh random id each call, so repeating it after an
// unknown outcome may deliver the message twice: give an id when that matters.
type UnavailableError struct {
	// Op names the call.
	Op string
	// OutcomeUnknown is, for Send and SendBatch (Broadcast), true unless every try
	// was answered by a gateway saying that it admitted nothing (ErrorInfo reason
	// STORAGE_UNAVAILABLE): a message may have been admitted. That is so when the
	// gateway said so (OUTCOME_UNKNOWN), and when no gateway answered, as when the
	// connection broke mid-call: the gateway may have admitted the message and died
	// before it could say. When false, a Send or SendBatch admitted nothing.
	OutcomeUnknown bool
	// Err is the last gRPC status error.
	Err error
}

func (e *UnavailableError) Error() string {
	what := "gateway unavailable"
	if e.OutcomeUnknown {
		what = "gateway unavailable, outcome unknown (retry with the same client message id)"
	}
	return fmt.Sprintf("herald: %s: %s: %s", e.Op, what, status.Convert(e.Err).Message())
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// StatusError is any other error status from the gateway: UNAUTHENTICATED (a bad or
// revoked key), PERMISSION_DENIED, NOT_FOUND, FAILED_PRECONDITION, INTERNAL...
type StatusError struct {
	// Op names the call.
	Op string
	// Code is the gRPC status code.
	Code codes.Code
	// Reason is the google.rpc.ErrorInfo reason, when the gateway gave one, e.g.
	// "BAD_VERIFICATION_CODE".
	Reason string
	// Err is the gRPC status error.
	Err error
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("herald: %s: %s: %s", e.Op, e.Code, status.Convert(e.Err).Message())
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

func (e *StatusError) Unwrap() error { return e.Err }

// callError turns an error from a gRPC call into the SDK's typed error. A context
// error of the caller's is returned as it is.
func callError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	st, ok := status.FromError(err)
	if !ok {
		return &StatusError{Op: op, Code: codes.Unknown, Err: err}
	}
	switch st.Code() {
	case codes.Unavailable:
		return &UnavailableError{Op: op, OutcomeUnknown: admits(op) && reason(st) != "STORAGE_UNAVAILABLE", Err: err}
	case codes.DeadlineExceeded:
		// The gateway's end of the deadline came first (the caller's context is not done):
		// the call may have done its work before the gateway gave up on it, so a Send's
		// outcome is unknown, and a retry with the same client message id is safe.
		return &UnavailableError{Op: op, OutcomeUnknown: admits(op), Err: err}
	case codes.ResourceExhausted:
		switch reason(st) {
		case "NEW_RECIPIENT_LIMITED":
			// RecordConsent for a person new to the business, beyond its tier: a
			// refusal for the caller to schedule (the wait can be hours), not the rate.
			return &RejectedError{Outcome: heraldv1.Outcome_OUTCOME_NEW_RECIPIENT_LIMITED, RetryAfter: retryInfo(st)}
		case "REQUEST_TOO_LARGE":
			return &StatusError{Op: op, Code: st.Code(), Reason: reason(st), Err: err} // the same request fails again
		}
		return &RateLimitedError{Op: op, RetryAfter: retryInfo(st), Err: err}
	case codes.InvalidArgument:
		e := &InvalidArgumentError{Op: op, Err: err}
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					e.Violations = append(e.Violations, Violation{Field: v.GetField(), Description: v.GetDescription()})
				}
			}
		}
		return e
	}
	return &StatusError{Op: op, Code: st.Code(), Reason: reason(st), Err: err}
}

// admits reports whether the call op may admit messages: whether an UNAVAILABLE from
// it leaves the caller to wonder whether it did.
func admits(op string) bool { return op == "send" || op == "send batch" }

// reason is a status's google.rpc.ErrorInfo reason, or "".
func reason(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// retryInfo is the delay a status's google.rpc.RetryInfo asks for, or 0.
func retryInfo(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return max(ri.GetRetryDelay().AsDuration(), 0)
		}
	}
	return 0
}

// ErrSigningKeyExists is returned by RegisterSigningKey when the business has another
// signing key registered. A sender without that key cannot replace it: load the key
// where you send from; holding it, rotate with RotateSigningKey; having lost it, ask
// the operator to replace it (every device then sees a key change).
var ErrSigningKeyExists = errors.New("client: the business has another signing key registered")

// Errors a Device returns as the Reason of a *RejectedDeliveryError, next to those of
// package e2e (e2e.ErrBadSignature, e2e.ErrHeaderMismatch, e2e.ErrNotForThisDevice,
// e2e.ErrMalformed, e2e.ErrUnsupportedVersion, e2e.ErrUnsupportedAlgorithm).
var (
	// ErrReplay means the message was accepted and acknowledged before (by its message
	// id, or by its business and client message id), or was sealed too long ago for
	// the device to remember whether it was.
	ErrReplay = errors.New("client: replayed message")
	// ErrNoSigningKey means the delivery carries no business signing key and the
	// device has none pinned for the business: it cannot tell who sent it.
	ErrNoSigningKey = errors.New("client: no signing key for the business")
)

// RejectedDeliveryError is a delivery the device refused: it did not open with the
// device's keys, was not signed by the business's pinned key, claims other routing
// metadata than it was sealed with, or is a replay. Its content was not returned.
// errors.Is(err, e2e.ErrHeaderMismatch) and the like see through it to Reason.
type RejectedDeliveryError struct {
	// MessageID is the delivery's message id.
	MessageID string
	// BusinessID is the business the delivery claims sent it (unproven).
	BusinessID string
	// Reason is why: an e2e error, ErrReplay or ErrNoSigningKey.
	Reason error
	// Dropped is set by Receive when it acknowledged the delivery, so that it does not
	// come again (see Receive for which it keeps); Open never sets it.
	Dropped bool
}

func (e *RejectedDeliveryError) Error() string {
	return fmt.Sprintf("herald: delivery %s from %s rejected: %v", e.MessageID, e.BusinessID, e.Reason)
}

func (e *RejectedDeliveryError) Unwrap() error { return e.Reason }

// KeyChangedError is a delivery signed by another key than the ones the device
// trusts for the business, that verifies under the key the delivery carries, and that
// no chain of endorsements from a trusted key vouches for (a business that rotates its
// key has the old key endorse the new one, and Open follows that without asking). So
// the business's keys were replaced by the operator, after the business lost them, or
// someone is impersonating it; only the person can tell (by asking the business
// through another channel). The message is not returned and not acknowledged: after
// TrustKey(BusinessID, Offered), the next Receive opens it.
type KeyChangedError struct {
	// MessageID is the delivery's message id.
	MessageID string
	// BusinessID is the business the delivery claims sent it.
	BusinessID string
	// Pinned is the key the device trusts for BusinessID (the latest, if it trusts
	// several).
	Pinned ed25519.PublicKey
	// Offered is the key the delivery carries, which signed it.
	Offered ed25519.PublicKey
}

func (e *KeyChangedError) Error() string {
	return fmt.Sprintf("herald: delivery %s: business %s signs with a new key %s (pinned: %s)",
		e.MessageID, e.BusinessID, hex.EncodeToString(e.Offered), hex.EncodeToString(e.Pinned))
}
