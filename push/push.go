package push

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ErrGone means the push service no longer knows the endpoint (the app was
// uninstalled, or the subscription expired): remove it, and do not send to it again.
var ErrGone = errors.New("push: the endpoint is gone")

// Sender wakes devices through one push service.
type Sender interface {
	// Wake sends one contentless wake-up to the device whose push address is to (a
	// Web Push endpoint URL, or an FCM or APNs device token). It returns ErrGone,
	// wrapped, when the service says the address is no longer valid.
	Wake(ctx context.Context, to string) error
}

// StatusError is a push service's refusal that is not ErrGone: a bad credential, a
// rate limit, a failure on its side. Retry later (RetryAfter, when the service said).
type StatusError struct {
	Service    string
	StatusCode int
	// Reason is the service's short explanation, when it gave one.
	Reason string
	// RetryAfter is how long the service asked to wait, or 0.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("push: %s answered %d", e.Service, e.StatusCode)
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

// retryAfter reads a Retry-After header given in seconds.
func retryAfter(h http.Header) time.Duration {
	var s int
	if _, err := fmt.Sscanf(h.Get("Retry-After"), "%d", &s); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}
