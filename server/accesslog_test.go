package server

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// accessLines are the access lines (msg "rpc" or "login failed") of a JSON log.
func accessLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		if l["msg"] == "rpc" || l["msg"] == "login failed" {
			lines = append(lines, l)
		}
	}
	return lines
}

// find returns the access lines of method.
func find(lines []map[string]any, method string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["method"] == "/"+method {
			out = append(out, l)
		}
	}
	return out
}

// TestAccessLog: every RPC writes one access line at info with its method, code,
// duration and whom it acted for; a failed login, of each kind of credential, is one
// line at warn saying which credential failed, why, and from where. No line holds a
// token, a phone number or the ciphertext.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	// The gateway's clock stands still, so that the refusals below are within one
	// second of each other however slowly the machine runs.
	clock := newClock()
	g := startGateway(t, withClock(clock), func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	biz, key := g.newBusiness("Acme")
	phone := g.register(alice)
	m := msg(alice, tx, rcpt, "m-1", "the body", phone)
	if r := g.send(key, m); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatal(r)
	}
	r := g.receive(phone)
	r.next()
	r.cancel()
	const (
		badKey    = "hk_stolen-looking-key-0123456789"
		badToken  = "hd_stolen-looking-token-0123456789"
		badAdmin  = "stolen-looking-admin-token-0123456789"
		sendPath  = "herald.v1.MessagingService/Send"
		blockPath = "herald.v1.RecipientService/Block"
		adminPath = "herald.v1.AdminService/GetBusiness"
	)
	_, err := g.messaging.Send(as(badKey), &heraldv1.SendRequest{Message: m})
	requireCode(t, err, codes.Unauthenticated, "")
	_, err = g.recipient.Block(as(badToken), &heraldv1.BlockRequest{BusinessId: biz})
	requireCode(t, err, codes.Unauthenticated, "")
	_, err = g.admin.GetBusiness(as(badAdmin), &heraldv1.GetBusinessRequest{BusinessId: biz})
	requireCode(t, err, codes.Unauthenticated, "")
	_, err = g.messaging.Send(context.Background(), &heraldv1.SendRequest{Message: m})
	if grpcstatus.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}

	// The stream's line is written when it ends, which the cancel above starts.
	deadline := time.Now().Add(10 * time.Second)
	for len(find(accessLines(t, logs.String()), "herald.v1.RecipientService/Receive")) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	lines := accessLines(t, out)

	// Malformed or missing credentials are refused by the transport's tap, which logs
	// at most a line a second per kind of credential (the metrics count them all): the
	// second failed Send within the second is counted, not logged.
	sends := find(lines, sendPath)
	if len(sends) != 2 {
		t.Fatalf("%d access lines for Send, want 2 (the accepted one, the first failed login):\n%s", len(sends), out)
	}
	ok := sends[0]
	if ok["level"] != "INFO" || ok["code"] != "OK" || ok["business"] != biz || ok["device"] != nil {
		t.Errorf("the accepted Send's line = %v, want INFO, code OK, business %s", ok, biz)
	}
	if d, _ := ok["duration"].(float64); d <= 0 {
		t.Errorf("the accepted Send's line has duration %v, want a positive one", ok["duration"])
	}
	recv := find(lines, "herald.v1.RecipientService/Receive")
	if len(recv) != 1 || recv[0]["level"] != "INFO" || recv[0]["device"] != phone.id || recv[0]["business"] != nil {
		t.Errorf("Receive's lines = %v, want one at INFO naming device %s", recv, phone.id)
	}

	for _, c := range []struct {
		line       map[string]any
		credential string
		reason     string
	}{
		{sends[1], "api_key", "missing or malformed `authorization: Bearer <api key>` metadata"},
		{find(lines, blockPath)[0], "device_token", "missing or malformed `authorization: Bearer <device token>` metadata"},
		{find(lines, adminPath)[0], "admin_token", "missing or invalid admin token"},
	} {
		l := c.line
		if l["level"] != "WARN" || l["msg"] != "login failed" || l["code"] != "Unauthenticated" ||
			l["credential"] != c.credential || l["reason"] != c.reason || !strings.HasPrefix(l["peer"].(string), "127.0.0.1:") {
			t.Errorf("failed login's line = %v, want WARN \"login failed\" with credential %s, reason %q and the peer",
				l, c.credential, c.reason)
		}
	}
	for _, l := range lines {
		if l["level"] == "INFO" && l["msg"] != "rpc" {
			t.Errorf("line %v at info is not an access line", l)
		}
	}

	// A second later, the next refusal of the kind is logged again.
	clock.Add(time.Second)
	_, err = g.messaging.Send(context.Background(), &heraldv1.SendRequest{Message: m})
	requireCode(t, err, codes.Unauthenticated, "")
	if n := len(find(accessLines(t, logs.String()), sendPath)); n != 3 {
		t.Fatalf("%d access lines for Send a second later, want 3: the refusal after the second is logged", n)
	}
	// A key of the right shape that is no key passes the tap and is refused by
	// authentication, after a Redis lookup: logged under the same budget, so a flood
	// of them writes a line a second, which then says how many it left out.
	forged := key[:len(key)-4] + "zzzz"
	for range 3 {
		_, err = g.messaging.Send(as(forged), &heraldv1.SendRequest{Message: m})
		requireCode(t, err, codes.Unauthenticated, "")
	}
	if n := len(find(accessLines(t, logs.String()), sendPath)); n != 3 {
		t.Fatalf("%d access lines for Send after forged keys within the second, want still 3", n)
	}
	clock.Add(time.Second)
	_, err = g.messaging.Send(as(forged), &heraldv1.SendRequest{Message: m})
	requireCode(t, err, codes.Unauthenticated, "")
	sends = find(accessLines(t, logs.String()), sendPath)
	if len(sends) != 4 || sends[3]["not_logged_since_last"] != float64(3) {
		t.Fatalf("after another second: %d lines, the last %v; want 4, the last saying 3 were not logged", len(sends), sends[len(sends)-1])
	}
	out = logs.String()

	secrets := []string{alice, strings.TrimPrefix(alice, "+"), key, phone.token, testAdminToken, badKey, badToken, badAdmin}
	for _, e := range m.Envelopes {
		secrets = append(secrets, renderings(e.Ciphertext)...)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the log holds %.40q", s)
		}
	}
}

// TestAccessLogIsQuietAboveInfo: at warn, ordinary calls write nothing.
func TestAccessLogIsQuietAboveInfo(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	g := startGateway(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	_, key := g.newBusiness("Acme")
	phone := g.register(alice)
	g.send(key, msg(alice, tx, rcpt, "m-1", "the body", phone))
	if lines := accessLines(t, logs.String()); len(lines) != 0 {
		t.Fatalf("at warn, ordinary calls wrote %v", lines)
	}
}
