package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/keylog"
	"google.golang.org/grpc"
)

// The key log (package keylog) is where a gateway publishes every device key it hands
// out. A Business with WithKeyLog seals only to keys the log proves it published, in a
// checkpoint that extends every checkpoint it accepted before: a gateway, or someone
// with its Redis, that slips a key in has to publish it where the person's own device
// can see it (Device.AuditKeys), and cannot show this business another history than
// the one it showed before.

// ErrKeyNotInLog is a lookup whose device key the key log does not prove: the gateway
// gave no proof, or one that fails. Nothing is sealed to such a key.
var ErrKeyNotInLog = errors.New("herald: a device key is not proven in the key log")

// WithKeyLog checks keys against the gateway's key log, whose public key is logKey
// (the operator publishes it). A Business checks every device key a lookup returns; a
// Device checks the business key of every delivery, and keeps a delivery whose key
// the log does not prove queued, unopened (a *KeyNotInLogError). last is the newest
// checkpoint accepted before (Business.KeyLogCheckpoint; a Device keeps its own in
// MarshalState), or nil the first time: keep it across restarts, or a log rewritten
// in between goes unnoticed.
func WithKeyLog(logKey string, last []byte) Option {
	return keyLogOption{logKey, last}
}

type keyLogOption struct {
	logKey string
	last   []byte
}

func (o keyLogOption) verifier() (*keylog.Verifier, error) {
	v, err := keylog.NewVerifier(o.logKey, o.last)
	if err != nil {
		return nil, fmt.Errorf("herald: key log: %w", err)
	}
	return v, nil
}

func (o keyLogOption) applyBusiness(b *Business) { b.keyLog, b.keyLogErr = o.verifier() }
func (o keyLogOption) applyDevice(d *Device)     { d.keyLog, d.keyLogErr = o.verifier() }

// KeyNotInLogError is a delivery whose business key the key log does not prove: the
// gateway sent no proof, or one that fails. The delivery stays queued, unopened; a
// later Receive, whose delivery carries a proof, opens it.
type KeyNotInLogError struct {
	MessageID  string
	BusinessID string
	Reason     error
}

func (e *KeyNotInLogError) Error() string {
	return fmt.Sprintf("herald: message %s from %s: its business key is not proven in the key log: %v", e.MessageID,
		e.BusinessID, e.Reason)
}

// Unwrap makes errors.Is(err, ErrKeyNotInLog) hold.
func (e *KeyNotInLogError) Unwrap() error { return ErrKeyNotInLog }

// acceptDeliveryCheckpoint has the device's key log accept a delivery's checkpoint
// (fetching the consistency proof it needs), and remembers it for Open.
func (d *Device) acceptDeliveryCheckpoint(ctx context.Context, note []byte) error {
	if d.keyLog == nil || len(note) == 0 {
		return nil
	}
	d.mu.Lock()
	_, ok := d.checkpoints[string(note)]
	d.mu.Unlock()
	if ok {
		return nil
	}
	c, err := acceptCheckpoint(ctx, d.keyLog, d.conn, note)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.checkpoints) >= 16 {
		clear(d.checkpoints)
	}
	d.checkpoints[string(note)] = c
	return nil
}

// checkBusinessKey checks that the delivery's business key is proven in a checkpoint
// the device accepted. The caller holds mu.
func (d *Device) checkBusinessKey(dl *heraldv1.Delivery) error {
	if d.keyLogErr != nil {
		return d.keyLogErr
	}
	if d.keyLog == nil {
		return nil
	}
	fail := func(reason error) error {
		return &KeyNotInLogError{MessageID: dl.GetMessageId(), BusinessID: dl.GetBusinessId(), Reason: reason}
	}
	c, ok := d.checkpoints[string(dl.GetKeyLogCheckpoint())]
	if !ok {
		return fail(errors.New("the delivery's checkpoint was not accepted (Receive accepts it)"))
	}
	p := dl.GetBusinessKeyProof()
	if p == nil {
		return fail(errors.New("no proof"))
	}
	e, err := d.keyLog.VerifyInclusion(c, p.GetLeafIndex(), p.GetLeaf(), p.GetInclusion())
	if err != nil {
		return fail(err)
	}
	switch {
	case e.Kind.Device(), e.Kind == keylog.BusinessKeyRetired:
		return fail(fmt.Errorf("the proven leaf is a %s", e.Kind))
	case e.Owner != dl.GetBusinessId() || !bytes.Equal(e.PublicKey, dl.GetBusinessSigningKey()):
		return fail(fmt.Errorf("the proven leaf publishes another key (of %s)", e.Owner))
	}
	return nil
}

// KeyLogCheckpoint is the newest key log checkpoint the Business accepted (a signed
// note), to keep and give to WithKeyLog next time; nil without a key log.
func (b *Business) KeyLogCheckpoint() []byte {
	if b.keyLog == nil {
		return nil
	}
	s, ok := b.keyLog.Last()
	if !ok {
		return nil
	}
	return s.Note
}

// verifyKeys checks every device of a lookup against the key log.
func (b *Business) verifyKeys(ctx context.Context, resp *heraldv1.LookupRecipientResponse) error {
	if b.keyLogErr != nil {
		return b.keyLogErr
	}
	if b.keyLog == nil {
		return nil
	}
	cp, err := acceptCheckpoint(ctx, b.keyLog, b.conn, resp.GetKeyLogCheckpoint())
	if err != nil {
		return err
	}
	for _, d := range resp.GetDevices() {
		p := d.GetKeyProof()
		if p == nil {
			return fmt.Errorf("%w: device %s came without a proof", ErrKeyNotInLog, d.GetDeviceId())
		}
		e, err := b.keyLog.VerifyInclusion(cp, p.GetLeafIndex(), p.GetLeaf(), p.GetInclusion())
		if err != nil {
			return fmt.Errorf("%w: device %s: %w", ErrKeyNotInLog, d.GetDeviceId(), err)
		}
		if !e.Kind.Device() || e.Kind == keylog.DeviceKeyRemoved || e.ID != d.GetDeviceId() ||
			string(e.PublicKey) != string(d.GetPublicKey()) || e.Algorithm != e2e.Algorithm(d.GetKeyAlgorithm()).String() {
			return fmt.Errorf("%w: device %s: the proven leaf publishes another key (%s of %s)", ErrKeyNotInLog,
				d.GetDeviceId(), e.Kind, e.ID)
		}
	}
	return nil
}

// acceptCheckpoint has v accept the signed checkpoint note, fetching the consistency
// proof from the newest checkpoint v accepted (or to it, for an older one).
func acceptCheckpoint(ctx context.Context, v *keylog.Verifier, conn grpc.ClientConnInterface, note []byte) (keylog.Checkpoint, error) {
	if len(note) == 0 {
		return keylog.Checkpoint{}, fmt.Errorf("%w: the gateway sent no checkpoint", ErrKeyNotInLog)
	}
	c, err := v.Open(note)
	if err != nil {
		return keylog.Checkpoint{}, fmt.Errorf("herald: key log checkpoint: %w", err)
	}
	for try := 0; ; try++ {
		var proof [][]byte
		last, had := v.Last()
		if had && last.Size != c.Size {
			lo, hi := min(last.Size, c.Size), max(last.Size, c.Size)
			resp, err := heraldv1.NewKeyLogServiceClient(conn).GetConsistencyProof(ctx,
				&heraldv1.GetConsistencyProofRequest{OldSize: lo, NewSize: hi})
			if err != nil {
				return keylog.Checkpoint{}, callError(ctx, "key log consistency", err)
			}
			proof = resp.GetProof()
		}
		accepted, err := v.Update(note, proof)
		if err == nil {
			return accepted, nil
		}
		// A concurrent call (another lookup or send of this client) may have moved v
		// while this one fetched its proof, which then proves the wrong step: fetch
		// again from where v is now. A log that is really inconsistent fails again.
		if now, has := v.Last(); try < 2 && has && (!had || now.Size != last.Size) {
			continue
		}
		return keylog.Checkpoint{}, fmt.Errorf("herald: key log: %w", err)
	}
}

// AuditKeys returns every key event the key log holds for this person's number,
// oldest first, each proven included in a checkpoint signed by the log whose public
// key is logKey: a device added behind the person's back is there even if the device
// list hides it. (The proofs show each event is in the log everyone sees; that the
// gateway returned every event of the number needs the full log, which a witness or
// the operator's auditors read.)
func (d *Device) AuditKeys(ctx context.Context, logKey string) ([]keylog.Event, error) {
	v, err := keylog.NewVerifier(logKey, nil)
	if err != nil {
		return nil, fmt.Errorf("herald: key log: %w", err)
	}
	var resp *heraldv1.AuditKeysResponse
	err = d.retry(ctx, "audit keys", func(ctx context.Context) error {
		var err error
		resp, err = d.rpc.AuditKeys(d.authorized(ctx), &heraldv1.AuditKeysRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	cp, err := v.Update(resp.GetCheckpoint(), nil)
	if err != nil {
		return nil, fmt.Errorf("herald: key log checkpoint: %w", err)
	}
	var out []keylog.Event
	for _, p := range resp.GetEvents() {
		e, err := v.VerifyInclusion(cp, p.GetLeafIndex(), p.GetLeaf(), p.GetInclusion())
		if err != nil {
			return nil, fmt.Errorf("%w: event %d: %w", ErrKeyNotInLog, p.GetLeafIndex(), err)
		}
		out = append(out, e)
	}
	return out, nil
}
