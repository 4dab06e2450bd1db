package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(Config) bool
	}{
		{name: "no redis is dev mode", check: func(c Config) bool { return c.Dev && c.Listen == "127.0.0.1:7400" }},
		{name: "env is read", env: map[string]string{"HERALD_LISTEN": "127.0.0.1:9", "HERALD_REDIS": "redis://127.0.0.1:6379",
			"HERALD_SECRET": "0123456789abcdef0", "HERALD_ADMIN_TOKEN": "0123456789abcdef0"},
			check: func(c Config) bool { return !c.Dev && c.Listen == "127.0.0.1:9" }},
		{name: "flag beats env", args: []string{"--listen", "127.0.0.1:8"}, env: map[string]string{"HERALD_LISTEN": "127.0.0.1:9"},
			check: func(c Config) bool { return c.Listen == "127.0.0.1:8" }},
		{name: "redis without secret", args: []string{"--redis", "redis://127.0.0.1:6379", "--admin-token", "0123456789abcdef0"}, wantErr: "--secret"},
		{name: "redis without admin token", args: []string{"--redis", "redis://127.0.0.1:6379", "--secret", "0123456789abcdef0"}, wantErr: "--admin-token"},
		{name: "short secret", args: []string{"--secret", "short"}, wantErr: "--secret must be at least 16 bytes"},
		{name: "bad redis url", args: []string{"--redis", "http://x"}, wantErr: "--redis"},
		{name: "bad listen", args: []string{"--listen", "nope"}, wantErr: "--listen"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantErr: "--log-level"},
		{name: "stray argument", args: []string{"serve"}, wantErr: "unexpected argument"},
		{name: "caps from flags and env", args: []string{"--pair-interval", "2s"}, env: map[string]string{"HERALD_RECIPIENT_MARKETING_CAP": "5"},
			check: func(c Config) bool {
				return c.Caps.PairInterval == 2e9 && c.Caps.MarketingPerWindow == 5 && c.Caps.PairBurst == 3
			}},
		{name: "bad env duration", env: map[string]string{"HERALD_PAIR_INTERVAL": "soon"}, wantErr: "HERALD_PAIR_INTERVAL"},
		{name: "bad env boolean", env: map[string]string{"HERALD_REDIS_CLUSTER": "yes"}, wantErr: "HERALD_REDIS_CLUSTER"},
		{name: "bad env sandbox", env: map[string]string{"HERALD_APNS_SANDBOX": "on"}, wantErr: "HERALD_APNS_SANDBOX"},
		{name: "bad env wake interval", env: map[string]string{"HERALD_WAKE_INTERVAL": "often"}, wantErr: "HERALD_WAKE_INTERVAL"},
		{name: "bad quality threshold", args: []string{"--quality-threshold", "2"}, wantErr: "--quality-threshold"},
		{name: "text logs and no metrics by default", check: func(c Config) bool { return c.LogFormat == "text" && c.MetricsListen == "" }},
		{name: "observability from env", env: map[string]string{"HERALD_LOG_FORMAT": "json", "HERALD_METRICS_LISTEN": "127.0.0.1:9464"},
			check: func(c Config) bool { return c.LogFormat == "json" && c.MetricsListen == "127.0.0.1:9464" }},
		{name: "bad log format", args: []string{"--log-format", "xml"}, wantErr: "--log-format"},
		{name: "bad metrics listen", args: []string{"--metrics-listen", "9464"}, wantErr: "--metrics-listen"},
		{name: "limits by default", check: func(c Config) bool {
			return c.Limits.MaxConnections == 10_000 && c.Limits.MaxStreamsPerConn == 256 && c.Limits.StreamsPerToken == 4 &&
				c.Limits.PendingBytesPerBusiness == 256<<20 && c.Limits.LookupRate == 2
		}},
		{name: "limits from flags and env", args: []string{"--max-connections", "50", "--pending-bytes-per-business", "0"},
			env: map[string]string{"HERALD_LOOKUP_RATE": "0.5", "HERALD_SEND_TIMEOUT": "1m"},
			check: func(c Config) bool {
				return c.Limits.MaxConnections == 50 && c.Limits.PendingBytesPerBusiness < 0 && c.Limits.LookupRate == 0.5 &&
					c.Limits.SendTimeout == 60e9
			}},
		{name: "bad max batch bytes", args: []string{"--max-batch-bytes", "1000"}, wantErr: "--max-batch-bytes"},
		{name: "bad lookup rate", env: map[string]string{"HERALD_LOOKUP_RATE": "fast"}, wantErr: "HERALD_LOOKUP_RATE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("config = %+v", c)
			}
		})
	}
}

// TestPushConfig: a VAPID key file and subject turn Web Push on; a missing file, a key
// that is not P-256 PEM or a subject that is no contact URL is an error at start.
func TestPushConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(key)
	good := filepath.Join(dir, "vapid.pem")
	os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a key"), 0o600)
	c, err := parseConfig([]string{"--vapid-key-file", good, "--vapid-subject", "mailto:ops@example.com"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if wp, _, _, err := c.Push.senders(); err != nil || wp == nil {
		t.Fatalf("web push = %v, %v", wp, err)
	}
	for _, args := range [][]string{
		{"--vapid-key-file", filepath.Join(dir, "missing.pem"), "--vapid-subject", "mailto:ops@example.com"},
		{"--vapid-key-file", junk, "--vapid-subject", "mailto:ops@example.com"},
		{"--vapid-key-file", good, "--vapid-subject", "ops"},
		{"--wake-interval", "10ms"},
	} {
		if _, err := parseConfig(args, func(string) string { return "" }); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
