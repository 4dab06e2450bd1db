package main

import (
	"bytes"
	"flag"
	"io"
	"slices"
	"testing"
)

// env is a fake environment for loadConfig.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// parseGlobal runs the top-level parse that dispatch does, without a command.
func parseGlobal(t *testing.T, vars map[string]string, args ...string) Config {
	t.Helper()
	cfg := loadConfig(env(vars))
	fs := flag.NewFlagSet("herald", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.bind(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	cfg.noteFlags(fs)
	return cfg
}

func TestConfigEnvThenFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		env          map[string]string
		args         []string
		addr         string
		addrExplicit bool
		state        string
		json         bool
	}{
		{
			name:  "defaults",
			env:   map[string]string{"HOME": "/home/ann"},
			addr:  defaultAddr,
			state: "/home/ann/.config/herald",
		},
		{
			name:  "XDG_CONFIG_HOME beats HOME",
			env:   map[string]string{"HOME": "/home/ann", "XDG_CONFIG_HOME": "/cfg"},
			addr:  defaultAddr,
			state: "/cfg/herald",
		},
		{
			name:  "a relative XDG_CONFIG_HOME is ignored, as the spec says",
			env:   map[string]string{"HOME": "/home/ann", "XDG_CONFIG_HOME": "cfg"},
			addr:  defaultAddr,
			state: "/home/ann/.config/herald",
		},
		{
			name: "no home: no default state",
			env:  map[string]string{},
			addr: defaultAddr,
		},
		{
			name:         "environment",
			env:          map[string]string{"HOME": "/home/ann", "HERALD_ADDR": "gw:7400", "HERALD_STATE": "/s"},
			addr:         "gw:7400",
			addrExplicit: true,
			state:        "/s",
		},
		{
			name:         "flags beat environment",
			env:          map[string]string{"HERALD_ADDR": "gw:7400", "HERALD_STATE": "/s"},
			args:         []string{"--addr", "other:1", "--state=/t", "--json"},
			addr:         "other:1",
			addrExplicit: true,
			state:        "/t",
			json:         true,
		},
		{
			name:         "the default address given as a flag is still a choice",
			env:          map[string]string{},
			args:         []string{"-addr", defaultAddr},
			addr:         defaultAddr,
			addrExplicit: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parseGlobal(t, tt.env, tt.args...)
			if cfg.Addr != tt.addr || cfg.addrExplicit != tt.addrExplicit || cfg.StateDir != tt.state || cfg.JSON != tt.json {
				t.Errorf("got addr %q (explicit %v), state %q, json %v; want %q (%v), %q, %v",
					cfg.Addr, cfg.addrExplicit, cfg.StateDir, cfg.JSON, tt.addr, tt.addrExplicit, tt.state, tt.json)
			}
		})
	}
}

func TestTokenPrecedence(t *testing.T) {
	t.Parallel()
	all := map[string]string{
		"HERALD_TOKEN":       "generic",
		"HERALD_ADMIN_TOKEN": "admin",
		"HERALD_API_KEY":     "hk_key",
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		kind tokenKind
		want string
	}{
		{"kind's variable beats HERALD_TOKEN (admin)", all, nil, adminToken, "admin"},
		{"kind's variable beats HERALD_TOKEN (API key)", all, nil, apiKey, "hk_key"},
		{"HERALD_TOKEN when the kind has none", map[string]string{"HERALD_TOKEN": "generic", "HERALD_ADMIN_TOKEN": "admin"}, nil, apiKey, "generic"},
		{"--token beats everything", all, []string{"--token", "flag"}, apiKey, "flag"},
		{"nothing", map[string]string{}, nil, adminToken, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parseGlobal(t, tt.env, tt.args...)
			if got := cfg.token(tt.kind); got != tt.want {
				t.Errorf("token(%s) = %q, want %q", tt.kind.env, got, tt.want)
			}
		})
	}
}

func TestTLSDefaultsToPlaintextOnlyOnLoopback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		args []string
		want bool
	}{
		{"127.0.0.1:7400", nil, false},
		{"127.9.9.9:7400", nil, false},
		{"localhost:7400", nil, false},
		{"LOCALHOST:7400", nil, false},
		{"[::1]:7400", nil, false},
		{"unix:///run/herald.sock", nil, false},
		{"herald.example.com:443", nil, true},
		{"10.0.0.5:7400", nil, true},
		{"[2001:db8::1]:7400", nil, true},
		{"dns:///herald.example.com:443", nil, true},
		{"127.0.0.1:7400", []string{"--tls"}, true},
		{"herald.example.com:443", []string{"--tls=false"}, false},
	}
	for _, tt := range tests {
		cfg := parseGlobal(t, nil, tt.args...)
		if got := cfg.useTLS(tt.addr); got != tt.want {
			t.Errorf("useTLS(%q) with %q = %v, want %v", tt.addr, tt.args, got, tt.want)
		}
	}
}

func TestParseMixesFlagsAndArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		args   []string
		pos    []string
		device string
		addr   string
		json   bool
	}{
		{"flags first", []string{"--name", "phone", "B1"}, []string{"B1"}, "phone", defaultAddr, false},
		{"argument first", []string{"B1", "--name", "phone"}, []string{"B1"}, "phone", defaultAddr, false},
		{"global flags after the command", []string{"B1", "--json", "--addr", "gw:1"}, []string{"B1"}, "default", "gw:1", true},
		{"after --, all is positional", []string{"--", "--name", "B1"}, []string{"--name", "B1"}, "default", defaultAddr, false},
		{"several arguments", []string{"A", "--name=x", "B", "C"}, []string{"A", "B", "C"}, "x", defaultAddr, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &cli{cfg: loadConfig(env(nil)), stdout: io.Discard, stderr: io.Discard}
			fs := flag.NewFlagSet("device block", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			name := deviceFlag(fs)
			pos, err := c.parse(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tt.pos) || *name != tt.device || c.cfg.Addr != tt.addr || c.cfg.JSON != tt.json {
				t.Errorf("got %q, --name %q, addr %q, json %v; want %q, %q, %q, %v",
					pos, *name, c.cfg.Addr, c.cfg.JSON, tt.pos, tt.device, tt.addr, tt.json)
			}
		})
	}
}

func TestExitStatusOfBadCommandLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want int
	}{
		{nil, exitUsage},
		{[]string{"-h"}, exitOK},
		{[]string{"help"}, exitOK},
		{[]string{"help", "send"}, exitOK},
		{[]string{"send", "--help"}, exitOK},
		{[]string{"frobnicate"}, exitUsage},
		{[]string{"admin"}, exitUsage},
		{[]string{"admin", "frobnicate"}, exitUsage},
		{[]string{"--nope", "send"}, exitUsage},
		{[]string{"send", "--nope"}, exitUsage},
		{[]string{"send", "--to", "+15551234567", "--category", "transactional", "--kind", "receipt"}, exitUsage},                  // no --text
		{[]string{"send", "--to", "+15551234567", "--category", "promo", "--kind", "receipt", "--text", "x"}, exitUsage},           // bad category
		{[]string{"send", "--to", "+15551234567", "--category", "transactional", "--text", "x"}, exitUsage},                        // kind needed
		{[]string{"send", "--to", "+15551234567", "--category", "transactional", "--kind", "receipt", "--text", "x"}, exitUsage},   // no API key
		{[]string{"admin", "get-business"}, exitUsage},                                                                             // no id
		{[]string{"admin", "revoke-key", "K1", "--key", "hk_x"}, exitUsage},                                                        // both
		{[]string{"admin", "revoke-key"}, exitUsage},                                                                               // neither
		{[]string{"device", "consent", "B1", "--category", "marketing", "--in", "--out"}, exitUsage},                               // both
		{[]string{"consent", "record", "--to", "+15551234567", "--category", "marketing", "--in"}, exitUsage},                      // no --source
		{[]string{"device", "register", "--phone", "+15551234567", "--code", "1", "--name", "../x", "--state", "/tmp"}, exitError}, // bad name
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		got := run(t.Context(), tt.args, env(nil), &stdout, &stderr)
		if got != tt.want {
			t.Errorf("herald %q exited %d, want %d; stderr:\n%s", tt.args, got, tt.want, stderr.String())
		}
		if got == exitOK && stdout.Len() == 0 {
			t.Errorf("herald %q printed no usage", tt.args)
		}
		if got == exitUsage && stderr.Len() == 0 {
			t.Errorf("herald %q said nothing about its usage error", tt.args)
		}
	}
}
