package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"iter"
	"time"

	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// Message is a delivery the device verified and decrypted.
type Message struct {
	// ID is the gateway's message id: pass it to Ack, Read and ReportSpam.
	ID string
	// BusinessID is the sender, proven by its signature under the pinned key.
	BusinessID string
	// BusinessName is the sender's display name as the gateway says it; unlike the
	// fields below, nothing proves it.
	BusinessName string
	// Category, Kind and ClientMessageID are as the business sealed them.
	Category        e2e.Category
	Kind            e2e.Kind
	ClientMessageID string
	// SentTime is when the business sealed the message, by its clock.
	SentTime time.Time
	// AdmitTime is when the gateway admitted it, and ExpireTime when it would have
	// dropped it unacknowledged; both as the gateway says.
	AdmitTime  time.Time
	ExpireTime time.Time
	// Body is the plaintext.
	Body []byte
}

// Open verifies and decrypts one delivery, as Receive does with each: it opens the
// envelope with the device key it was sealed to (the current key or a retired one),
// checks the business's signature against a key the device trusts for the business,
// checks that the sealed header matches the delivery's business id, category, kind and
// client message id, and that the message is not a replay. It then remembers the
// message as accepted, until Ack or Read.
//
// The first key the device sees for a business, it pins. A later key it trusts
// without asking when the delivery's chain (business_key_chain) shows it endorsed by a
// key the device trusts, as a business that rotates its key does: the new key is
// pinned, and the one before stays trusted for RetiredKeyRetention, for messages
// queued before the rotation.
//
// It returns a *KeyChangedError when the delivery is signed by a key that nothing the
// device trusts endorsed but verifies under the key it carries (the operator replaced
// the business's lost keys, or someone impersonates it), and a *RejectedDeliveryError
// for anything else that fails. Open makes no call to the gateway.
func (d *Device) Open(dl *heraldv1.Delivery) (*Message, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	biz := dl.GetBusinessId()
	reject := func(reason error) error {
		return &RejectedDeliveryError{MessageID: dl.GetMessageId(), BusinessID: biz, Reason: reason}
	}
	expect := e2e.Header{BusinessID: biz, Category: e2e.Category(dl.GetCategory()), Kind: e2e.Kind(dl.GetKind()),
		ClientMessageID: dl.GetClientMessageId()}
	envelope := dl.GetCiphertext()
	if len(dl.GetBody()) > 0 {
		envelope = e2e.JoinEnvelope(dl.GetBody(), dl.GetCiphertext())
	}
	offered := ed25519.PublicKey(dl.GetBusinessSigningKey())
	pinned, isPinned := d.pins[biz]
	// trusted is the key the signature must verify under: the pinned one, unless the
	// delivery offers another key the device trusts, or one a key it trusts endorsed
	// (rotated), or it has pinned none (first use).
	trusted, rotated := pinned, false
	switch {
	case !isPinned:
		trusted = offered
	case len(offered) != ed25519.PublicKeySize || bytes.Equal(offered, pinned):
	case bytes.Equal(d.trusted(biz, e2e.KeyID(offered)), offered):
		trusted = offered
	case d.endorsed(biz, offered, dl.GetBusinessKeyChain()):
		trusted, rotated = offered, true
	}
	if len(trusted) == 0 {
		return nil, reject(ErrNoSigningKey)
	}
	// With a key log, the key must be published there, whatever the device trusts.
	if err := d.checkBusinessKey(dl); err != nil {
		return nil, err
	}
	m, err := d.open(expect, trusted, envelope, dl.GetKeyId())
	if err != nil {
		// Signed by a key nothing the device trusts vouches for: surface that only if
		// the offered key really signed this one.
		if isPinned && errors.Is(err, e2e.ErrBadSignature) && !bytes.Equal(trusted, offered) && len(offered) > 0 {
			if _, err := d.open(expect, offered, envelope, dl.GetKeyId()); err == nil {
				return nil, &KeyChangedError{MessageID: dl.GetMessageId(), BusinessID: biz,
					Pinned: append(ed25519.PublicKey(nil), pinned...), Offered: append(ed25519.PublicKey(nil), offered...)}
			}
		}
		return nil, reject(err)
	}

	r := record{MessageID: dl.GetMessageId(), BusinessID: biz, ClientMessageID: m.Header.ClientMessageID, SentTime: m.Header.SentTime}
	if _, ok := d.acked[r.MessageID]; ok || d.ackedPairs[r.pair()] {
		return nil, reject(ErrReplay)
	}
	for id, a := range d.accepted {
		if id != r.MessageID && a.pair() == r.pair() {
			return nil, reject(ErrReplay)
		}
	}
	if d.now().Sub(r.SentTime) > ReplayWindow {
		return nil, reject(ErrReplay)
	}
	switch {
	case !isPinned:
		d.pins[biz] = append(ed25519.PublicKey(nil), offered...)
	case rotated:
		d.rotate(biz, offered)
	}
	d.accepted[r.MessageID] = r
	msg := &Message{ID: dl.GetMessageId(), BusinessID: biz, BusinessName: dl.GetBusinessDisplayName(),
		Category: m.Header.Category, Kind: m.Header.Kind, ClientMessageID: m.Header.ClientMessageID,
		SentTime: m.Header.SentTime, Body: m.Body}
	if dl.GetSentTime() != nil {
		msg.AdmitTime = dl.GetSentTime().AsTime()
	}
	if dl.GetExpireTime() != nil {
		msg.ExpireTime = dl.GetExpireTime().AsTime()
	}
	return msg, nil
}

// open tries the device's keys on envelope, the one named keyID first. A key other
// than the one the envelope was sealed to fails with ErrNotForThisDevice before any
// cryptography; any other error is about the envelope and ends the search. The caller
// holds mu.
func (d *Device) open(expect e2e.Header, business ed25519.PublicKey, envelope []byte, keyID string) (*e2e.Message, error) {
	keys := make([]*e2e.DeviceKey, 0, len(d.keys))
	for _, k := range d.keys {
		if k.key.KeyID() == keyID {
			keys = append([]*e2e.DeviceKey{k.key}, keys...)
		} else {
			keys = append(keys, k.key)
		}
	}
	var err error
	for _, k := range keys {
		var m *e2e.Message
		m, err = e2e.Open(k, d.id, expect, business, envelope)
		if err == nil {
			return m, nil
		}
		if !errors.Is(err, e2e.ErrNotForThisDevice) {
			return nil, err
		}
	}
	return nil, err
}

// Receive streams the device's messages: those queued first, then new ones as they
// are admitted. Each delivery goes through Open; the sequence yields the message, or
// the error Open returned for it and goes on with the next. A message stays queued
// until Ack or Read, so a message yielded but not acknowledged comes again from the
// next Receive (never twice from one).
//
// A delivery that fails verification (a *RejectedDeliveryError) is reported to the
// gateway as refused (Reject), so that it is not delivered again and the business sees
// STATUS_FAILED with the reason, never STATUS_DELIVERED; it is never returned:
// whatever its reason (forged, tampered, replayed, not for this device), no later
// attempt would open it.
// Two exceptions stay queued: ErrUnsupportedVersion and ErrUnsupportedAlgorithm (an
// updated SDK may open it), and a *KeyChangedError (after TrustKey, the next Receive
// opens it).
//
// When the stream breaks, Receive reconnects with backoff. The sequence ends after it
// yields an error that reconnecting cannot cure (a revoked device token), or the
// context's error when it is done.
func (d *Device) Receive(ctx context.Context) iter.Seq2[*Message, error] {
	return func(yield func(*Message, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		yielded := map[string]bool{}
		for failures := 0; ; {
			d.forgetAcked(yielded)
			err := d.receive(ctx, &failures, yielded, yield)
			if errors.Is(err, errStopped) {
				return
			}
			if ctx.Err() != nil {
				yield(nil, ctx.Err())
				return
			}
			if !transientStreamError(err) {
				yield(nil, callError(ctx, "receive", err))
				return
			}
			wait := d.backoffFor(failures)
			failures++
			d.log.DebugContext(ctx, "herald: receive stream broke; reconnecting", "err", err, "wait", wait)
			if err := sleep(ctx, wait); err != nil {
				if errors.Is(err, errDeadlineTooSoon) {
					err = context.DeadlineExceeded // no time left to reconnect
				}
				yield(nil, err)
				return
			}
		}
	}
}

// forgetAcked drops acknowledged messages from yielded: the gateway never sends them
// again, so remembering them would only grow the set for as long as Receive runs.
func (d *Device) forgetAcked(yielded map[string]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range yielded {
		if _, ok := d.acked[id]; ok {
			delete(yielded, id)
		}
	}
}

// receive runs one Receive call until it fails.
func (d *Device) receive(ctx context.Context, failures *int, yielded map[string]bool, yield func(*Message, error) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := d.rpc.Receive(d.authorized(ctx), &heraldv1.ReceiveRequest{})
	if err != nil {
		return err
	}
	for {
		item, err := stream.Recv()
		if err != nil {
			return err
		}
		*failures = 0
		if n := item.GetNotice(); n != nil {
			d.notice(ctx, n)
			continue
		}
		dl := item.GetDelivery()
		if dl == nil {
			continue // an item of a newer gateway that this SDK does not know
		}
		if err := d.acceptDeliveryCheckpoint(ctx, dl.GetKeyLogCheckpoint()); err != nil {
			d.log.WarnContext(ctx, "herald: a delivery's key log checkpoint was refused", "message_id", dl.GetMessageId(), "err", err)
		}
		if yielded[dl.GetMessageId()] {
			continue
		}
		yielded[dl.GetMessageId()] = true
		m, err := d.Open(dl)
		var rej *RejectedDeliveryError
		if errors.As(err, &rej) {
			d.log.WarnContext(ctx, "herald: rejected a delivery", "message_id", dl.GetMessageId(), "business_id", dl.GetBusinessId(), "err", err)
		}
		if rej != nil && !keepRejected(rej) {
			if aerr := d.Reject(ctx, dl.GetMessageId(), RejectReasonOf(rej.Reason)); aerr != nil {
				d.log.WarnContext(ctx, "herald: could not report a rejected delivery", "message_id", dl.GetMessageId(), "err", aerr)
			} else {
				rej.Dropped = true
			}
		}
		if !yield(m, err) {
			return errStopped
		}
	}
}

// keepRejected reports whether a delivery Open refused should stay queued rather than
// be acknowledged: when a later attempt, with an updated SDK, might open it.
func keepRejected(rej *RejectedDeliveryError) bool {
	return errors.Is(rej.Reason, e2e.ErrUnsupportedVersion) || errors.Is(rej.Reason, e2e.ErrUnsupportedAlgorithm)
}

// notice hands a notice to the device's handler and acknowledges it; without a
// handler it is left for the next Receive.
func (d *Device) notice(ctx context.Context, n *heraldv1.DeviceNotice) {
	if d.notices == nil {
		return
	}
	d.notices(ctx, noticeOf(n))
	if err := d.retry(ctx, "ack notice", func(ctx context.Context) error {
		_, err := d.rpc.Ack(d.authorized(ctx), &heraldv1.AckRequest{NoticeIds: []string{n.GetNoticeId()}})
		return err
	}); err != nil {
		d.log.WarnContext(ctx, "herald: could not acknowledge a device notice; it comes again", "notice_id", n.GetNoticeId(), "err", err)
	}
}
