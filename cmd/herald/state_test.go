package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestDeviceStateRoundTrip(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "herald") // does not exist yet
	want := &deviceState{
		Addr:         "127.0.0.1:7400",
		RegisterTime: time.Date(2026, 11, 25, 7, 0, 0, 0, time.UTC),
		Device:       json.RawMessage(`{"device_id":"d_1","token":"hd_secret"}`),
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
	if compact(got.Device) != compact(want.Device) || got.Addr != want.Addr || !got.RegisterTime.Equal(want.RegisterTime) {
		t.Errorf("loaded %+v, want %+v", got, want)
	}

	// Only the temporary file's link may remain: no stray copies of the key.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state dir holds %d entries, want 1", len(entries))
	}
}

func TestDeviceStateIsPrivate(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("Unix permissions")
	}
	dir := filepath.Join(t.TempDir(), "herald")
	path, err := saveDevice(dir, defaultDevice, &deviceState{Device: json.RawMessage(`{"device_id":"d_1"}`)})
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
	t.Parallel()
	dir := t.TempDir()
	if _, err := saveDevice(dir, "phone", &deviceState{Device: json.RawMessage(`{"device_id":"first"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := checkDeviceFree(dir, "phone"); err == nil {
		t.Error("checkDeviceFree: a taken name is free")
	}
	if _, err := saveDevice(dir, "phone", &deviceState{Device: json.RawMessage(`{"device_id":"second"}`)}); err == nil {
		t.Error("saveDevice replaced an existing device")
	}
	got, err := loadDevice(dir, "phone")
	if err != nil || compact(got.Device) != `{"device_id":"first"}` {
		t.Errorf("after a second save: %+v, %v; want the first device", got, err)
	}
}

func TestDeviceNames(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
	_, err := loadDevice(t.TempDir(), "phone")
	if !errors.Is(err, errNoDevice) || !strings.Contains(err.Error(), "herald device register") {
		t.Errorf("loadDevice of a missing device: %v", err)
	}
}

func TestDeviceStateUpdateReplacesPrivately(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := saveDevice(dir, "phone", &deviceState{Device: json.RawMessage(`{"v":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := updateDevice(dir, "phone", &deviceState{Device: json.RawMessage(`{"v":2}`)}); err != nil {
		t.Fatal(err)
	}
	got, err := loadDevice(dir, "phone")
	if err != nil || compact(got.Device) != `{"v":2}` {
		t.Fatalf("after update: %+v, %v", got, err)
	}
	if runtime.GOOS != "windows" {
		if fi, _ := os.Stat(filepath.Join(dir, "phone.json")); fi.Mode().Perm() != 0o600 {
			t.Errorf("updated state has mode %o", fi.Mode().Perm())
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("state dir holds %d entries after an update, want 1", len(entries))
	}
}

func TestDeviceLock(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	dir := t.TempDir()
	unlock, err := lockDevice(dir, "phone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDevice(dir, "phone"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second lock: %v, want in use", err)
	}
	other, err := lockDevice(dir, "laptop")
	if err != nil {
		t.Errorf("another device's lock: %v", err)
	} else {
		other()
	}
	unlock()
	again, err := lockDevice(dir, "phone")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
}

func TestSigningKeyIsMadeOnceAndPrivate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "herald")
	key, saved, err := loadSigningKey(dir, "biz_1")
	if err != nil || saved {
		t.Fatalf("first load: saved %v, %v", saved, err)
	}
	path, err := saveSigningKey(dir, "biz_1", key)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("key file has mode %o", fi.Mode().Perm())
		}
	}
	again, saved, err := loadSigningKey(dir, "biz_1")
	if err != nil || !saved || !bytes.Equal(again.PublicKey(), key.PublicKey()) {
		t.Fatalf("second load: saved %v, %v, same key %v", saved, err, bytes.Equal(again.PublicKey(), key.PublicKey()))
	}
	if _, err := saveSigningKey(dir, "biz_1", again); !errors.Is(err, fs.ErrExist) {
		t.Errorf("saving over a key: %v, want ErrExist", err)
	}
	for _, id := range []string{"", "../x", "B1", "a/b"} {
		if _, _, err := loadSigningKey(dir, id); err == nil {
			t.Errorf("business id %q accepted", id)
		}
	}
}

func compact(b []byte) string {
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		return string(b)
	}
	return c.String()
}
