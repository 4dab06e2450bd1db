package main

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecondMachineNeverReplacesTheKey: a machine without the business's signing key
// does not register a new one by itself (which would make every message from the
// first machine fail on the devices), and cannot: it says how to load the key, or to
// have the operator replace a lost one, and sends with the key once loaded.
func TestSecondMachineNeverReplacesTheKey(t *testing.T) {
	t.Parallel()
	addr, adminAddr := startGateway(t, "admin-token-0123456789")
	first := map[string]string{"HERALD_ADDR": addr, "HERALD_ADMIN_ADDR": adminAddr, "HERALD_STATE": t.TempDir(), "HERALD_ADMIN_TOKEN": "admin-token-0123456789"}
	line := func(args ...string) string { return strings.TrimSpace(mustHerald(t, exitOK, first, args...)) }
	const phone = "+14155550123"
	first["HERALD_BUSINESS_ID"] = line("admin", "create-business", "--name", "Acme Coffee")
	first["HERALD_API_KEY"] = line("admin", "issue-key", first["HERALD_BUSINESS_ID"])
	biz := first["HERALD_BUSINESS_ID"]
	line("device", "register", "--phone", phone, "--code", line("admin", "issue-code", phone))
	send := func(vars map[string]string, want int, text string, extra ...string) (string, string) {
		t.Helper()
		args := append([]string{"send", "--to", phone, "--category", "transactional", "--kind", "receipt", "--text", text}, extra...)
		code, out, errOut := herald(t, vars, args...)
		if code != want {
			t.Fatalf("send %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", text, code, want, out, errOut)
		}
		return out, errOut
	}
	send(first, exitOK, "from the first machine")
	if out := line("device", "receive", "--ack"); !strings.Contains(out, "from the first machine") {
		t.Fatalf("device received:\n%s", out)
	}

	second := maps.Clone(first)
	second["HERALD_STATE"] = t.TempDir()
	_, errOut := send(second, exitError, "from the second machine, without the key")
	if !strings.Contains(errOut, "HERALD_SIGNING_KEY_FILE") || !strings.Contains(errOut, "herald admin replace-signing-key") {
		t.Fatalf("second machine without the key: stderr does not say how to load it or have it replaced:\n%s", errOut)
	}
	// The first machine's messages still open on the device: the key was not replaced.
	send(first, exitOK, "still the first key")
	if out := line("device", "receive", "--ack"); !strings.Contains(out, "still the first key") {
		t.Fatalf("after the second machine's attempt, the device received:\n%s", out)
	}

	second["HERALD_SIGNING_KEY_FILE"] = filepath.Join(first["HERALD_STATE"], "business-"+biz+".key")
	send(second, exitOK, "from the second machine, with the key")
	if out := line("device", "receive", "--ack"); !strings.Contains(out, "from the second machine, with the key") {
		t.Fatalf("a message signed with the loaded key, the device received:\n%s", out)
	}
}

// TestKeyRotateOnTheRealGateway: `herald key rotate` moves the business to a new key
// that the old one endorses; the device opens what comes under it without a key
// change. A machine still holding the old key is told it is not the current one, and
// the old key, once retired, endorses nothing.
func TestKeyRotateOnTheRealGateway(t *testing.T) {
	t.Parallel()
	addr, adminAddr := startGateway(t, "admin-token-0123456789")
	vars := map[string]string{"HERALD_ADDR": addr, "HERALD_ADMIN_ADDR": adminAddr, "HERALD_STATE": t.TempDir(), "HERALD_ADMIN_TOKEN": "admin-token-0123456789"}
	line := func(args ...string) string { return strings.TrimSpace(mustHerald(t, exitOK, vars, args...)) }
	const phone = "+14155550123"
	vars["HERALD_BUSINESS_ID"] = line("admin", "create-business", "--name", "Acme Coffee")
	vars["HERALD_API_KEY"] = line("admin", "issue-key", vars["HERALD_BUSINESS_ID"])
	biz := vars["HERALD_BUSINESS_ID"]
	line("device", "register", "--phone", phone, "--code", line("admin", "issue-code", phone))
	send := func(vars map[string]string, want int, text string) string {
		t.Helper()
		code, out, errOut := herald(t, vars, "send", "--to", phone, "--category", "transactional", "--kind", "receipt", "--text", text)
		if code != want {
			t.Fatalf("send %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", text, code, want, out, errOut)
		}
		return errOut
	}
	send(vars, exitOK, "under the first key")
	line("device", "receive", "--ack")

	keyFile := filepath.Join(vars["HERALD_STATE"], "business-"+biz+".key")
	oldKey, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	code, newID, errOut := herald(t, vars, "key", "rotate")
	if code != exitOK || !strings.Contains(errOut, "herald key retire ") {
		t.Fatalf("key rotate: exit %d\nstdout:\n%s\nstderr:\n%s", code, newID, errOut)
	}
	oldID := strings.Fields(errOut[strings.Index(errOut, "herald key retire "):])[3]
	send(vars, exitOK, "under the rotated key")
	if out := line("device", "receive", "--ack"); !strings.Contains(out, "under the rotated key") {
		t.Fatalf("after the rotation the device received:\n%s", out)
	}

	// Another machine with the old key.
	other := maps.Clone(vars)
	other["HERALD_SIGNING_KEY_FILE"] = filepath.Join(t.TempDir(), "old.key")
	if err := os.WriteFile(other["HERALD_SIGNING_KEY_FILE"], oldKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if errOut := send(other, exitError, "from a machine with the old key"); !strings.Contains(errOut, "not business "+biz+"'s current key") {
		t.Fatalf("a machine with the old key:\n%s", errOut)
	}
	line("key", "retire", oldID)
	if code, _, errOut := herald(t, other, "key", "rotate"); code != exitError || !strings.Contains(errOut, "endorsed_by_key_id") {
		t.Fatalf("rotating with a retired key: exit %d\n%s", code, errOut)
	}
}
