package client

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// retry runs call until it succeeds, fails for good, or has been tried s.attempts
// times, and returns nil or the last error, typed (callError). It retries only what
// the gateway says is safe to repeat as it is: UNAVAILABLE (a Send repeats its client
// message id, so a message admitted before the failure is not admitted again) and
// RESOURCE_EXHAUSTED (waiting at least its RetryInfo delay). An *UnavailableError
// returned is OutcomeUnknown if any try's outcome was unknown: a last try that
// admitted nothing speaks for itself only.
func (s *settings) retry(ctx context.Context, op string, call func(context.Context) error) error {
	unknown := false
	for attempt := 0; ; attempt++ {
		err := call(ctx)
		if err == nil {
			return nil
		}
		typed := callError(ctx, op, err)
		var wait time.Duration
		var rl *RateLimitedError
		var un *UnavailableError
		switch {
		case errors.As(typed, &rl):
			wait = s.after(rl.RetryAfter, attempt)
		case errors.As(typed, &un):
			unknown = unknown || un.OutcomeUnknown
			un.OutcomeUnknown = unknown
			wait = s.backoffFor(attempt)
		default:
			return typed
		}
		if attempt+1 >= s.attempts {
			return typed
		}
		s.log.DebugContext(ctx, "herald: retrying", "op", op, "code", status.Code(err).String(), "wait", wait)
		if err := sleep(ctx, wait); err != nil {
			if errors.Is(err, errDeadlineTooSoon) {
				return typed
			}
			return err
		}
	}
}

// backoffFor is the wait before retry number attempt+1 after a failure that says
// nothing of when to retry: exponential from s.backoff, capped at MaxBackoff, with
// "equal jitter" (between half and all of it) so that many clients cut off at once
// do not come back at once.
func (s *settings) backoffFor(attempt int) time.Duration {
	d := s.backoff
	for range min(attempt, 30) {
		d *= 2
		if d >= MaxBackoff {
			d = MaxBackoff
			break
		}
	}
	return d/2 + rand.N(d/2+1)
}

// after is the wait for a failure whose retry delay the gateway gave: never less than
// it, plus a little jitter; when it gave none, the exponential backoff.
func (s *settings) after(retryAfter time.Duration, attempt int) time.Duration {
	if retryAfter <= 0 {
		return s.backoffFor(attempt)
	}
	return retryAfter + rand.N(min(retryAfter/10, s.backoff)+1)
}

// errDeadlineTooSoon is a wait that would outlast the context's deadline: the caller
// gets the error that asked for the wait now rather than a deadline error later.
var errDeadlineTooSoon = errors.New("client: wait outlasts the deadline")

// sleep waits d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return errDeadlineTooSoon
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// transientStreamError reports whether a stream that ended with err should be opened
// again: the gateway going away (shutdown, restart, network), overload, or an end of
// a stream that is meant never to end.
func transientStreamError(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.Canceled, codes.DeadlineExceeded, codes.Internal, codes.Unknown:
		return true
	}
	return false
}
