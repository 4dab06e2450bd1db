package main

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestDeviceStateRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "herald") // does not exist yet
	want := &deviceState{
		DeviceID:     "d_1",
		DeviceToken:  "hd_secret",
		KeyAlgorithm: newDeviceAlgorithm.String(),
		PrivateKey:   []byte{0, 1, 2, 254, 255},
		Addr:         "127.0.0.1:7400",
		RegisterTime: time.Date(2026, 11, 25, 7, 0, 0, 0, time.UTC),
	}
	if err := checkDeviceFree(dir, "phone"); err != nil {
		t.Fatalf("checkDeviceFree before saving: %v", err)
	}
	path, err := saveDevice(dir, "phone", want)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "phone.json") {
		t.Errorf("saved to %s", path)
	}
	got, err := loadDevice(dir, "phone")
	if err != nil {
		t.Fatal(err)
	}
	if got.DeviceID != want.DeviceID || got.DeviceToken != want.DeviceToken || string(got.PrivateKey) != string(want.PrivateKey) ||
		got.Addr != want.Addr || !got.RegisterTime.Equal(want.RegisterTime) || got.algorithm() != newDeviceAlgorithm {
		t.Errorf("loaded %+v, want %+v", got, want)
	}

	// Only the temporary file's link may remain: no stray copies of the key.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state dir holds %d entries, want 1", len(entries))
	}
}

func TestDeviceStateIsPrivate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix permissions")
	}
	dir := filepath.Join(t.TempDir(), "herald")
	path, err := saveDevice(dir, defaultDevice, &deviceState{DeviceID: "d_1"})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %o, want %o", p, got, want)
		}
	}
}

func TestDeviceStateNeverReplacesAKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := saveDevice(dir, "phone", &deviceState{DeviceID: "first"}); err != nil {
		t.Fatal(err)
	}
	if err := checkDeviceFree(dir, "phone"); err == nil {
		t.Error("checkDeviceFree: a taken name is free")
	}
	if _, err := saveDevice(dir, "phone", &deviceState{DeviceID: "second"}); err == nil {
		t.Error("saveDevice replaced an existing device")
	}
	got, err := loadDevice(dir, "phone")
	if err != nil || got.DeviceID != "first" {
		t.Errorf("after a second save: %+v, %v; want the first device", got, err)
	}
}

func TestDeviceNames(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"default", "phone", "ann.laptop", "a_b-c", strings.Repeat("x", 64)} {
		if _, err := statePath(dir, name); err != nil {
			t.Errorf("statePath(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", ".", "..", ".hidden", "../x", "a/b", `a\b`, "a b", strings.Repeat("x", 65)} {
		if _, err := statePath(dir, name); err == nil {
			t.Errorf("statePath(%q) accepted it", name)
		}
	}
	if _, err := statePath("", "phone"); err == nil {
		t.Error("statePath accepted an empty state dir")
	}
}

func TestLoadMissingDevice(t *testing.T) {
	_, err := loadDevice(t.TempDir(), "phone")
	if !errors.Is(err, errNoDevice) || !strings.Contains(err.Error(), "herald device register") {
		t.Errorf("loadDevice of a missing device: %v", err)
	}
}
