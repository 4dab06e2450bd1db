package client

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/heraldhq/herald/e2e"
	"google.golang.org/grpc"
)

// stateVersion is the version of the MarshalState format.
const stateVersion = 1

// state is the MarshalState format: JSON, byte strings in base64.
type state struct {
	Version  int               `json:"version"`
	DeviceID string            `json:"device_id"`
	Token    string            `json:"token"`
	Keys     []stateKey        `json:"keys"`
	Pins     map[string][]byte `json:"pins,omitempty"`
	// EarlierPins are keys pinned before a business rotated (Device.earlier); a state
	// without them loads as a device that trusts no earlier key.
	EarlierPins map[string][]statePin `json:"earlier_pins,omitempty"`
	Accepted    []record              `json:"accepted,omitempty"`
	// KeyLogCheckpoint is the newest key log checkpoint the device accepted.
	KeyLogCheckpoint []byte   `json:"key_log_checkpoint,omitempty"`
	Acked            []record `json:"acked,omitempty"`
}

type statePin struct {
	Key   []byte    `json:"key"`
	Until time.Time `json:"until"`
}

type stateKey struct {
	// Private is e2e.DeviceKey.MarshalPrivate's output.
	Private []byte    `json:"private"`
	Retired time.Time `json:"retired,omitzero"`
}

// MarshalState returns the device's whole state, for the device to keep in its own
// private storage: its token and private keys, which read every message sent to it,
// and its pins and replay records, without which it would trust any business key and
// accept replays. Retired keys and records past their retention are dropped.
func (d *Device) MarshalState() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.prune()
	s := state{Version: stateVersion, DeviceID: d.id, Token: d.token, Pins: map[string][]byte{}}
	for _, k := range d.keys {
		priv, err := k.key.MarshalPrivate()
		if err != nil {
			return nil, err
		}
		s.Keys = append(s.Keys, stateKey{Private: priv, Retired: k.retired})
	}
	for b, k := range d.pins {
		s.Pins[b] = k
	}
	for b, ps := range d.earlier {
		if s.EarlierPins == nil {
			s.EarlierPins = map[string][]statePin{}
		}
		for _, p := range ps {
			s.EarlierPins[b] = append(s.EarlierPins[b], statePin{Key: p.key, Until: p.until})
		}
	}
	for _, r := range d.accepted {
		s.Accepted = append(s.Accepted, r)
	}
	for _, r := range d.acked {
		s.Acked = append(s.Acked, r)
	}
	if d.keyLog != nil {
		if last, ok := d.keyLog.Last(); ok {
			s.KeyLogCheckpoint = last.Note
		}
	}
	return json.Marshal(s)
}

// prune forgets what is past its retention. The caller holds mu.
func (d *Device) prune() {
	now := d.now()
	keys := d.keys[:1]
	for _, k := range d.keys[1:] {
		if now.Sub(k.retired) < RetiredKeyRetention {
			keys = append(keys, k)
		}
	}
	d.keys = keys
	for b, ps := range d.earlier {
		ps = slices.DeleteFunc(ps, func(p earlierPin) bool { return !now.Before(p.until) })
		if len(ps) == 0 {
			delete(d.earlier, b)
		} else {
			d.earlier[b] = ps
		}
	}
	for id, r := range d.acked {
		if now.Sub(r.SentTime) > ReplayWindow {
			delete(d.acked, id)
			delete(d.ackedPairs, r.pair())
		}
	}
	for id, r := range d.accepted {
		if now.Sub(r.SentTime) > ReplayWindow {
			delete(d.accepted, id)
		}
	}
}

// LoadDevice restores a device from what MarshalState returned, to act over conn.
func LoadDevice(conn grpc.ClientConnInterface, b []byte, opts ...DeviceOption) (*Device, error) {
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("client: load device: %w", err)
	}
	switch {
	case s.Version != stateVersion:
		return nil, fmt.Errorf("client: load device: state version %d, want %d", s.Version, stateVersion)
	case s.DeviceID == "" || s.Token == "":
		return nil, errors.New("client: load device: no device id or token")
	case len(s.Keys) == 0 || !s.Keys[0].Retired.IsZero():
		return nil, errors.New("client: load device: no current key")
	}
	d := newDevice(conn, opts)
	d.id, d.token = s.DeviceID, s.Token
	if d.keyLog != nil && s.KeyLogCheckpoint != nil {
		if _, ok := d.keyLog.Last(); !ok {
			if _, err := d.keyLog.Update(s.KeyLogCheckpoint, nil); err != nil {
				return nil, fmt.Errorf("client: load device: the key log checkpoint kept: %w", err)
			}
		}
	}
	for i, sk := range s.Keys {
		k, err := e2e.ParseDeviceKey(sk.Private)
		if err != nil {
			return nil, fmt.Errorf("client: load device: key %d: %w", i, err)
		}
		d.keys = append(d.keys, deviceKey{key: k, retired: sk.Retired})
	}
	for b, k := range s.Pins {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("client: load device: pinned key of %s is %d bytes", b, len(k))
		}
		d.pins[b] = ed25519.PublicKey(k)
	}
	for b, ps := range s.EarlierPins {
		for _, p := range ps {
			if len(p.Key) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("client: load device: an earlier key of %s is %d bytes", b, len(p.Key))
			}
			d.earlier[b] = append(d.earlier[b], earlierPin{key: ed25519.PublicKey(p.Key), until: p.Until})
		}
	}
	for _, r := range s.Accepted {
		d.accepted[r.MessageID] = r
	}
	for _, r := range s.Acked {
		d.acked[r.MessageID] = r
		d.ackedPairs[r.pair()] = true
	}
	return d, nil
}
