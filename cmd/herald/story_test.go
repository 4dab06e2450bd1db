package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/keylog"
	"github.com/heraldhq/herald/server"
	"github.com/redis/go-redis/v9"
)

// testLogKey and testLogPublicKey are the test gateways' key log keys.
var testLogKey, testLogPublicKey = func() (string, string) {
	s, v, err := keylog.GenerateKey("herald-test-log")
	if err != nil {
		panic(err)
	}
	return s, v
}()

// startGateway serves a real Herald gateway on a real store and returns the
// addresses of its public and its admin listener. opts change its configuration.
func startGateway(t *testing.T, adminToken string, opts ...func(*server.Config)) (addr, adminAddr string) {
	t.Helper()
	rs := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	cfg := server.Config{Redis: rdb, Secret: []byte("0123456789abcdef0123"), AdminToken: adminToken,
		Logger: slog.New(slog.DiscardHandler), LogKey: testLogKey}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	go srv.ServeAdmin(adminLis)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		rdb.Close()
	})
	return lis.Addr().String(), adminLis.Addr().String()
}

// TestStoryOnTheRealGateway is the README's story, end to end encrypted, on the real
// gateway: everything the CLI does as a business and as a device goes through the SDK.
func TestStoryOnTheRealGateway(t *testing.T) {
	t.Parallel()
	addr, adminAddr := startGateway(t, "admin-token-0123456789")
	vars := map[string]string{"HERALD_ADDR": addr, "HERALD_ADMIN_ADDR": adminAddr, "HERALD_STATE": t.TempDir(), "HERALD_ADMIN_TOKEN": "admin-token-0123456789"}
	const phone = "+14155550123"
	line := func(args ...string) string { return strings.TrimSpace(mustHerald(t, exitOK, vars, args...)) }

	vars["HERALD_BUSINESS_ID"] = line("admin", "create-business", "--name", "Acme Coffee")
	vars["HERALD_API_KEY"] = line("admin", "issue-key", vars["HERALD_BUSINESS_ID"])
	biz := vars["HERALD_BUSINESS_ID"]
	line("device", "register", "--phone", phone, "--code", line("admin", "issue-code", phone), "--name", "phone")
	// The laptop, the number's second device, waits until the phone approves it with
	// the code the laptop shows.
	var laptop registered
	if err := json.Unmarshal([]byte(line("--json", "device", "register", "--phone", phone, "--code", line("admin", "issue-code", phone),
		"--name", "laptop")), &laptop); err != nil || !laptop.Pending {
		t.Fatalf("laptop registration: %+v, %v", laptop, err)
	}
	mustHerald(t, exitError, vars, "device", "approve", laptop.DeviceID, "--code", "0000 0000", "--name", "phone")
	if out := line("device", "approve", laptop.DeviceID, "--code", laptop.Code, "--name", "phone"); !strings.Contains(out, "approved") {
		t.Fatalf("approve:\n%s", out)
	}
	if out := line("device", "list", "--name", "laptop"); strings.Count(out, "active") != 2 {
		t.Fatalf("device list:\n%s", out)
	}
	// The key log holds both devices' keys, and the approval, each proven.
	vars["HERALD_LOG_PUBLIC_KEY"] = testLogPublicKey // from here on, every key is checked against the log
	if out := line("device", "audit", "--name", "phone"); strings.Count(out, "device-key-added") != 2 ||
		strings.Count(out, "device-key-approved") != 1 || !strings.Contains(out, laptop.DeviceID) || !strings.Contains(out, laptop.Code) {
		t.Fatalf("device audit:\n%s", out)
	}
	send := func(want int, category, kind, text string) string {
		t.Helper()
		return mustHerald(t, want, vars, "send", "--to", phone, "--category", category, "--kind", kind, "--text", text)
	}

	if out := send(exitOK, "transactional", "receipt", "Your latte: $4.50"); !strings.Contains(out, "ACCEPTED") {
		t.Fatalf("send:\n%s", out)
	}
	var got delivered
	if err := json.Unmarshal([]byte(mustHerald(t, exitOK, vars, "--json", "device", "receive", "--name", "phone", "--ack")), &got); err != nil {
		t.Fatal(err)
	}
	if got.Text != "Your latte: $4.50" || got.BusinessID != biz || got.BusinessDisplayName != "Acme Coffee" {
		t.Errorf("phone received %+v", got)
	}
	if out := mustHerald(t, exitOK, vars, "device", "receive", "--name", "laptop", "--read"); !strings.Contains(out, "Your latte: $4.50") {
		t.Errorf("laptop received:\n%s", out)
	}
	if out := mustHerald(t, exitOK, vars, "statuses"); strings.Count(out, "DELIVERED")+strings.Count(out, "READ") < 2 {
		t.Errorf("statuses:\n%s", out)
	}
	if out := mustHerald(t, exitOK, vars, "device", "report", got.MessageID, "--reason", "spam", "--name", "phone"); !strings.Contains(out, "reported") {
		t.Errorf("report:\n%s", out)
	}

	// A rotated key: the next message is sealed to the new one and reads.
	if out := mustHerald(t, exitOK, vars, "device", "rotate-key", "--name", "phone"); !strings.Contains(out, "replaces") {
		t.Errorf("rotate-key:\n%s", out)
	}
	send(exitOK, "transactional", "delivery-status", "Out for delivery")
	if out := mustHerald(t, exitOK, vars, "device", "receive", "--name", "phone", "--ack"); !strings.Contains(out, "Out for delivery") {
		t.Errorf("after rotation the phone received:\n%s", out)
	}

	send(exitRejected, "marketing", "offer", "2 for 1 today")
	mustHerald(t, exitOK, vars, "device", "consent", biz, "--category", "marketing", "--in", "--name", "phone")
	send(exitOK, "marketing", "offer", "2 for 1 today")
	mustHerald(t, exitOK, vars, "device", "block", biz, "--name", "phone")
	if out := send(exitRejected, "transactional", "receipt", "hello?"); !strings.Contains(out, "BLOCKED") {
		t.Errorf("send after block:\n%s", out)
	}
	if out := mustHerald(t, exitOK, vars, "device", "prefs", "--name", "laptop"); !strings.Contains(out, "Acme Coffee") || !strings.Contains(out, "yes") {
		t.Errorf("prefs:\n%s", out)
	}

	// Without --follow, an unreachable gateway is an error, not "no messages".
	if code, _, stderr := herald(t, vars, "--addr", "127.0.0.1:1", "device", "receive", "--name", "phone"); code != exitError || !strings.Contains(stderr, "UNAVAILABLE") {
		t.Errorf("receive from nowhere: exit %d, %s", code, stderr)
	}
}
