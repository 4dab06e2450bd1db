package main

import (
	"maps"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecondMachineNeverReplacesTheKey: a machine without the business's signing key
// does not register a new one by itself (which would make every message from the
// first machine fail on the devices); it says how to load the key, sends with it once
// loaded, and replaces the key only when told to.
func TestSecondMachineNeverReplacesTheKey(t *testing.T) {
	t.Parallel()
	addr := startGateway(t, "admin-token-0123456789")
	first := map[string]string{"HERALD_ADDR": addr, "HERALD_STATE": t.TempDir(), "HERALD_ADMIN_TOKEN": "admin-token-0123456789"}
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
	if !strings.Contains(errOut, "HERALD_SIGNING_KEY_FILE") || !strings.Contains(errOut, "--replace-signing-key") {
		t.Fatalf("second machine without the key: stderr does not say how to load it:\n%s", errOut)
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

	delete(second, "HERALD_SIGNING_KEY_FILE")
	if _, errOut := send(second, exitOK, "with a replaced key", "--replace-signing-key"); !strings.Contains(errOut, "replacement signing key") {
		t.Fatalf("--replace-signing-key did not say it replaced the key:\n%s", errOut)
	}
}
