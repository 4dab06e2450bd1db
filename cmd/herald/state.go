package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// defaultDevice is the device name used when --name is not given.
const defaultDevice = "default"

// deviceState is what a registered device keeps on disk: the only copy of its private
// key and of its token, so the file is readable by its owner alone.
type deviceState struct {
	// DeviceID is the id businesses address envelopes to.
	DeviceID string `json:"device_id"`
	// DeviceToken authorises every RecipientService call but RegisterDevice.
	DeviceToken string `json:"device_token"`
	// KeyAlgorithm is the scheme of PrivateKey, by its enum name.
	KeyAlgorithm string `json:"key_algorithm"`
	// PrivateKey is the KEM's serialised private key (base64 in the file).
	PrivateKey []byte `json:"private_key"`
	// Addr is the gateway the device registered with, used unless --addr or
	// HERALD_ADDR says otherwise.
	Addr string `json:"addr"`
	// RegisterTime is when the device registered, for the user's benefit.
	RegisterTime time.Time `json:"register_time"`
}

// algorithm is KeyAlgorithm as the enum.
func (s *deviceState) algorithm() heraldv1.KeyAlgorithm {
	return heraldv1.KeyAlgorithm(heraldv1.KeyAlgorithm_value[s.KeyAlgorithm])
}

// deviceName keeps a device name a plain file name: no separators, no "..", no
// hidden files, nothing a shell would need quoting for.
var deviceName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$`)

// statePath is the file of the device called name in dir.
func statePath(dir, name string) (string, error) {
	if dir == "" {
		return "", errors.New("no state directory: set --state or HERALD_STATE (HOME is not set)")
	}
	if !deviceName.MatchString(name) {
		return "", fmt.Errorf("device name %q: want 1 to 64 of A-Z a-z 0-9 . _ -, not starting with a dot", name)
	}
	return filepath.Join(dir, name+".json"), nil
}

// errNoDevice says that a device name has no state yet.
var errNoDevice = errors.New("no such device")

// loadDevice reads the device called name from dir.
func loadDevice(dir, name string) (*deviceState, error) {
	path, err := statePath(dir, name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w %q in %s: run `herald device register` first", errNoDevice, name, dir)
	}
	if err != nil {
		return nil, err
	}
	var s deviceState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// checkDeviceFree fails when name is taken, before a registration would spend a
// one-time code on a device whose key could not be saved.
func checkDeviceFree(dir, name string) error {
	path, err := statePath(dir, name)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("device %q is already registered (%s): pick another --name", name, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// saveDevice writes a new device's state and returns its path. It never replaces an
// existing file, which may hold the only key of another registered device; and the
// file appears whole or not at all, since it is linked into place only once written.
func saveDevice(dir, name string, s *deviceState) (string, error) {
	path, err := statePath(dir, name)
	if err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	// CreateTemp creates the file with mode 0600, so the key is never readable by
	// others, not even briefly.
	tmp, err := os.CreateTemp(dir, "."+name+"-*.tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	// Link, unlike Rename, fails when path exists.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("device %q is already registered (%s)", name, path)
		}
		return "", err
	}
	return path, nil
}
