package main

import (
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
		{name: "bad quality threshold", args: []string{"--quality-threshold", "2"}, wantErr: "--quality-threshold"},
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
