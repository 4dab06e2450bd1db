package client

import (
	"context"
	"errors"
	"iter"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// Status is a step in a message's life on one device: accepted, delivered, read,
// expired or failed.
type Status = heraldv1.Status

// The statuses, as StatusEvent.Status reports them.
const (
	StatusAccepted  = heraldv1.Status_STATUS_ACCEPTED
	StatusDelivered = heraldv1.Status_STATUS_DELIVERED
	StatusRead      = heraldv1.Status_STATUS_READ
	StatusExpired   = heraldv1.Status_STATUS_EXPIRED
	// StatusFailed: the device refused the delivery (see StatusEvent.FailureReason).
	StatusFailed = heraldv1.Status_STATUS_FAILED
)

// StatusEvent is one status change of one of the business's messages.
type StatusEvent struct {
	// Cursor names this event: save it, and pass it to WithCursor after a restart to
	// resume after it.
	Cursor string
	// MessageID is the gateway's id of the message (Sent.MessageID).
	MessageID string
	// ClientMessageID is the message's idempotency key.
	ClientMessageID string
	// Status is what happened.
	Status Status
	// DeviceID is the device it happened on; empty for StatusAccepted, which is for
	// all the recipient's devices.
	DeviceID string
	// Time is when it happened.
	Time time.Time
	// FailureReason is why the device refused the delivery (StatusFailed only).
	FailureReason RejectReason
}

// Statuses streams the business's status events, oldest first, then new ones as they
// happen, from the cursor of the last event it yielded (or WithCursor's, or the
// oldest the gateway keeps). When the stream breaks (the gateway restarts, the network
// drops) it reconnects with backoff and resumes after the last event yielded, so no
// event is lost or repeated; the Business remembers that cursor (Cursor) for the next
// call too.
//
// The sequence ends after it yields an error: the context's when it is done, or an
// error that reconnecting cannot cure (a revoked API key, a cursor of another
// business). Stopping the loop early ends the stream. Run one Statuses per Business
// at a time: they share its cursor.
func (b *Business) Statuses(ctx context.Context) iter.Seq2[StatusEvent, error] {
	return func(yield func(StatusEvent, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for failures := 0; ; {
			err := b.streamStatuses(ctx, &failures, yield)
			if errors.Is(err, errStopped) {
				return
			}
			if ctx.Err() != nil {
				yield(StatusEvent{}, ctx.Err())
				return
			}
			if !transientStreamError(err) {
				yield(StatusEvent{}, callError(ctx, "stream status", err))
				return
			}
			wait := b.backoffFor(failures)
			failures++
			b.log.DebugContext(ctx, "herald: status stream broke; reconnecting", "err", err, "wait", wait)
			if err := sleep(ctx, wait); err != nil {
				if errors.Is(err, errDeadlineTooSoon) {
					err = context.DeadlineExceeded // no time left to reconnect
				}
				yield(StatusEvent{}, err)
				return
			}
		}
	}
}

// errStopped is the caller breaking out of a range loop.
var errStopped = errors.New("client: stopped by the caller")

// streamStatuses runs one StreamStatus call from the current cursor until it fails.
// Each event received resets failures, so that backoff grows only while nothing gets
// through.
func (b *Business) streamStatuses(ctx context.Context, failures *int, yield func(StatusEvent, error) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := b.rpc.StreamStatus(b.authorized(ctx), &heraldv1.StreamStatusRequest{Cursor: b.Cursor()})
	if err != nil {
		return err
	}
	for {
		e, err := stream.Recv()
		if err != nil {
			return err
		}
		*failures = 0
		b.mu.Lock()
		b.cursor = e.GetCursor()
		b.mu.Unlock()
		ev := StatusEvent{Cursor: e.GetCursor(), MessageID: e.GetMessageId(), ClientMessageID: e.GetClientMessageId(),
			Status: e.GetStatus(), DeviceID: e.GetDeviceId(), Time: e.GetTime().AsTime(), FailureReason: e.GetFailureReason()}
		if !yield(ev, nil) {
			return errStopped
		}
	}
}

// Cursor is the cursor of the last status event Statuses yielded (or WithCursor's):
// where the next Statuses starts.
func (b *Business) Cursor() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cursor
}
