package client

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// A person's devices watch over each other: a number that has devices gets a new one
// only when one of them approves it (after the person compared the codes both screens
// show for the new device's key), or when none refused it within the operator's
// waiting period. Every change reaches every device as a DeviceNotice in Receive.

// DeviceEvent is what happened to one of the person's devices.
type DeviceEvent = heraldv1.DeviceEvent

// The device events.
const (
	DevicePending    = heraldv1.DeviceEvent_DEVICE_EVENT_PENDING
	DeviceApproved   = heraldv1.DeviceEvent_DEVICE_EVENT_APPROVED
	DeviceActivated  = heraldv1.DeviceEvent_DEVICE_EVENT_ACTIVATED
	DeviceRemoved    = heraldv1.DeviceEvent_DEVICE_EVENT_REMOVED
	DeviceKeyRotated = heraldv1.DeviceEvent_DEVICE_EVENT_KEY_ROTATED
)

// DeviceNotice tells that one of the person's devices was added, approved, removed or
// rotated its key. Show it: a device the person does not know is how a takeover looks,
// and RemoveDevice undoes it.
type DeviceNotice struct {
	ID       string
	Event    DeviceEvent
	DeviceID string
	// PublicKey, Algorithm and KeyID are the device's key, except for DeviceRemoved.
	PublicKey []byte
	Algorithm e2e.Algorithm
	KeyID     string
	Time      time.Time
	// ActivateTime is, for DevicePending, when the device becomes active unless
	// refused.
	ActivateTime time.Time
	// ByDeviceID is the device that approved or removed it; "" when the waiting period
	// ended or the device removed itself.
	ByDeviceID string
}

// Code is the code of the notice's key (DeviceCode), to compare with what the new
// device shows before approving it.
func (n DeviceNotice) Code() string { return DeviceCode(n.PublicKey) }

func noticeOf(n *heraldv1.DeviceNotice) DeviceNotice {
	out := DeviceNotice{ID: n.GetNoticeId(), Event: n.GetEvent(), DeviceID: n.GetDeviceId(), PublicKey: n.GetPublicKey(),
		Algorithm: e2e.Algorithm(n.GetKeyAlgorithm()), KeyID: n.GetKeyId(), Time: n.GetTime().AsTime(),
		ByDeviceID: n.GetByDeviceId()}
	if n.GetActivateTime() != nil {
		out.ActivateTime = n.GetActivateTime().AsTime()
	}
	return out
}

// DeviceCode is the short code of a device public key, eight digits in two groups,
// that the person compares on two screens before approving a device: the new device
// shows its own (Device.Code), the approving device computes it from the key the
// notice carries, never from anything the gateway says the code is. A gateway that
// swapped the key would have to find another key with the same code: one in 10^8 per
// try, and each try is a registration the person sees.
func DeviceCode(pub []byte) string {
	h := sha256.Sum256(append([]byte("herald device code v1\x00"), pub...))
	n := binary.BigEndian.Uint64(h[:8]) % 100_000_000
	return fmt.Sprintf("%04d %04d", n/10_000, n%10_000)
}

// WithDeviceNotices has Receive call f with every notice about the person's devices;
// after f returns, the notice is acknowledged and not sent again. Without it, notices
// are left unacknowledged, and come again with every Receive: a device that does not
// show them hides nothing from the person's other devices.
func WithDeviceNotices(f func(context.Context, DeviceNotice)) DeviceOption {
	return deviceOption(func(d *Device) { d.notices = f })
}

type deviceOption func(*Device)

func (o deviceOption) applyDevice(d *Device) { o(d) }

// DeviceInfo is one of the person's devices, as ListDevices lists it.
type DeviceInfo struct {
	ID        string
	Pending   bool
	PublicKey []byte
	Algorithm e2e.Algorithm
	KeyID     string
	Created   time.Time
	// ActivateTime is, for a pending device, when it becomes active unless refused.
	ActivateTime time.Time
	// ThisDevice is true for the device that asked.
	ThisDevice bool
}

// Code is the device's key code (DeviceCode).
func (i DeviceInfo) Code() string { return DeviceCode(i.PublicKey) }

// Code is this device's key code (DeviceCode), to show the person while another of
// their devices approves this one.
func (d *Device) Code() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return DeviceCode(d.keys[0].key.PublicKey())
}

// Pending reports whether the device waited for approval when it registered, and
// until when at most; a pending device receives nothing (Receive fails with reason
// DEVICE_PENDING) until another device of the person approves it.
func (d *Device) Pending() (bool, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending, d.activate
}

// ListDevices lists the person's devices, active and pending.
func (d *Device) ListDevices(ctx context.Context) ([]DeviceInfo, error) {
	var resp *heraldv1.ListDevicesResponse
	err := d.retry(ctx, "list devices", func(ctx context.Context) error {
		var err error
		resp, err = d.rpc.ListDevices(d.authorized(ctx), &heraldv1.ListDevicesRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []DeviceInfo
	for _, i := range resp.GetDevices() {
		info := DeviceInfo{ID: i.GetDeviceId(), Pending: i.GetState() == heraldv1.DeviceState_DEVICE_STATE_PENDING,
			PublicKey: i.GetPublicKey(), Algorithm: e2e.Algorithm(i.GetKeyAlgorithm()), KeyID: i.GetKeyId(),
			Created: i.GetCreateTime().AsTime(), ThisDevice: i.GetThisDevice()}
		if i.GetActivateTime() != nil {
			info.ActivateTime = i.GetActivateTime().AsTime()
		}
		out = append(out, info)
	}
	return out, nil
}

// ApproveDevice makes a pending device of the person active. Call it only after the
// person compared the code this device shows for the pending device's key (the
// notice's or DeviceInfo's Code) with the code the new device shows (its Code); keyID
// binds the approval to that key.
func (d *Device) ApproveDevice(ctx context.Context, deviceID, keyID string) error {
	return d.retry(ctx, "approve device", func(ctx context.Context) error {
		_, err := d.rpc.ApproveDevice(d.authorized(ctx), &heraldv1.ApproveDeviceRequest{DeviceId: deviceID, KeyId: keyID})
		return err
	})
}

// RemoveDevice removes one of the person's devices, active or pending (refusing it),
// or this one: its token stops working and what was queued for it is reported
// expired.
func (d *Device) RemoveDevice(ctx context.Context, deviceID string) error {
	return d.retry(ctx, "remove device", func(ctx context.Context) error {
		_, err := d.rpc.RemoveDevice(d.authorized(ctx), &heraldv1.RemoveDeviceRequest{DeviceId: deviceID})
		return err
	})
}
