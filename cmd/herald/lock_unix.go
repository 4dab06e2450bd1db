//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDevice takes the device's lock for a command that changes its state, so that
// two herald processes acting as one device cannot overwrite each other's state (one
// rotating the key while the other saves what it received would lose the new key).
// The lock is the kernel's, so a killed process never leaves it behind.
func lockDevice(dir, name string) (unlock func(), err error) {
	path, err := statePath(dir, name)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "."+name+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("device %q (%s) is in use by another herald command", name, path)
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}
