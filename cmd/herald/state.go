package main

// state.go is what the CLI keeps in the state directory: one file per registered
// device (the SDK's device state, which holds its private keys and token) and one
// signing key per business that sent from here. Every file is readable by its owner
// alone, and appears whole or not at all.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/heraldhq/herald/e2e"
)

// defaultDevice is the device name used when --name is not given.
const defaultDevice = "default"

// deviceState is a registered device's file.
type deviceState struct {
	// Addr is the gateway the device registered with, used unless --addr or
	// HERALD_ADDR says otherwise.
	Addr string `json:"addr"`
	// RegisterTime is when the device registered, for the user's benefit.
	RegisterTime time.Time `json:"register_time"`
	// Device is the SDK's state of the device (client.Device.MarshalState): its id,
	// token, private keys, pinned business keys and replay records.
	Device json.RawMessage `json:"device"`
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
	if len(s.Device) == 0 {
		return nil, fmt.Errorf("%s: no device state in it (written by an older herald? register again)", path)
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
// existing file, which may hold the only key of another registered device.
func saveDevice(dir, name string, s *deviceState) (string, error) {
	path, err := statePath(dir, name)
	if err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	err = writePrivate(dir, path, append(b, '\n'), false)
	if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("device %q is already registered (%s)", name, path)
	}
	return path, err
}

// updateDevice replaces a device's state with s, after the device changed it (a
// message accepted, a key rotated or trusted). The caller holds the device's lock.
func updateDevice(dir, name string, s *deviceState) error {
	path, err := statePath(dir, name)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writePrivate(dir, path, append(b, '\n'), true)
}

// writePrivate writes b to path, mode 0600, in dir (created 0700 if need be). The
// file appears whole or not at all: it is written aside, synced, then linked into
// place (failing with fs.ErrExist if path exists) or, with replace, renamed over it.
func writePrivate(dir, path string, b []byte, replace bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// CreateTemp creates the file with mode 0600, so a key is never readable by
	// others, not even briefly.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if replace {
		return os.Rename(tmp.Name(), path)
	}
	// Link, unlike Rename, fails when path exists.
	return os.Link(tmp.Name(), path)
}

// businessID keeps a business id usable in a file name; Herald issues ids of
// lower-case letters, digits and '_'.
var businessID = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// signingKeyPath is the file of the signing key of business id in dir.
func signingKeyPath(dir, id string) (string, error) {
	if dir == "" {
		return "", errors.New("no state directory for the business's signing key: set --state or HERALD_STATE (HOME is not set)")
	}
	if !businessID.MatchString(id) {
		return "", fmt.Errorf("business id %q: not an id Herald issued", id)
	}
	return filepath.Join(dir, "business-"+id+".key"), nil
}

// loadSigningKey returns the business's signing key from dir, or a new one when
// there is none yet (saved false), for the caller to save (saveSigningKey) and
// register. A key on disk may be one not registered yet (the process stopped in
// between, or it waits for the operator to put it in place of a lost one): send
// registers it, or says that the business has another.
func loadSigningKey(dir, id string) (key *e2e.SigningKey, saved bool, err error) {
	path, err := signingKeyPath(dir, id)
	if err != nil {
		return nil, false, err
	}
	seed, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := e2e.GenerateSigningKey()
		return key, false, err
	}
	if err != nil {
		return nil, false, err
	}
	if key, err = e2e.ParseSigningKey(seed); err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return key, true, nil
}

// saveSigningKey saves a new signing key of the business. It fails with fs.ErrExist
// if the business has one saved here: that may be the only copy of its key.
func saveSigningKey(dir, id string, key *e2e.SigningKey) (string, error) {
	path, err := signingKeyPath(dir, id)
	if err != nil {
		return "", err
	}
	return path, writePrivate(dir, path, key.MarshalPrivate(), false)
}
