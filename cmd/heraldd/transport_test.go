package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/testcert"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// env is an environment of only vars.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// prodEnv is the environment of a gateway outside dev mode.
func prodEnv() map[string]string {
	return map[string]string{"HERALD_REDIS": "redis://127.0.0.1:6379", "HERALD_SECRET": "0123456789abcdef0",
		"HERALD_ADMIN_TOKEN": "0123456789abcdef0"}
}

// with is vars with more variables set, name then value.
func with(vars map[string]string, more ...string) map[string]string {
	m := maps.Clone(vars)
	for i := 0; i+1 < len(more); i += 2 {
		m[more[i]] = more[i+1]
	}
	return m
}

// TestTransportConfig: plaintext never listens beyond loopback unless told
// --insecure, TLS settings that go together are given together, and dev mode's
// in-process store does not serve the network by accident.
func TestTransportConfig(t *testing.T) {
	t.Parallel()
	prod := prodEnv()
	tls := []string{"--tls-cert-file", "c.pem", "--tls-key-file", "k.pem"}
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{name: "loopback plaintext is the default", env: prod},
		{name: "all interfaces without TLS", args: []string{"--listen", "0.0.0.0:7400"}, env: prod,
			wantErr: "--listen 0.0.0.0:7400 reaches beyond this machine"},
		{name: "no host is all interfaces", args: []string{"--listen", ":7400"}, env: prod,
			wantErr: "give --insecure"},
		{name: "a host name other than localhost", args: []string{"--listen", "gw.internal:7400"}, env: prod,
			wantErr: "serve TLS (--tls-cert-file and --tls-key-file)"},
		{name: "localhost and ::1 are loopback", args: []string{"--listen", "localhost:7400", "--admin-listen", "[::1]:7401"}, env: prod},
		{name: "all interfaces with --insecure", args: []string{"--listen", "0.0.0.0:7400", "--insecure"}, env: prod},
		{name: "all interfaces with HERALD_INSECURE", args: []string{"--listen", "0.0.0.0:7400"},
			env: with(prod, "HERALD_INSECURE", "true")},
		{name: "all interfaces with TLS", args: append([]string{"--listen", "0.0.0.0:7400", "--admin-listen", "0.0.0.0:7401"}, tls...), env: prod},
		{name: "admin listener beyond loopback without TLS", args: []string{"--admin-listen", "10.0.0.5:7401"}, env: prod,
			wantErr: "--admin-listen 10.0.0.5:7401 reaches beyond this machine"},
		{name: "no admin listener", args: []string{"--admin-listen", ""}, env: prod},
		{name: "admin on the public listener", args: []string{"--admin-listen", "127.0.0.1:7400"}, env: prod,
			wantErr: "--admin-listen must differ from --listen"},
		{name: "a certificate without its key", args: []string{"--tls-cert-file", "c.pem"}, env: prod,
			wantErr: "--tls-cert-file and --tls-key-file go together"},
		{name: "a client CA without TLS", args: []string{"--tls-client-ca-file", "ca.pem"}, env: prod,
			wantErr: "needs TLS"},
		{name: "dev mode beyond loopback", args: []string{"--listen", "0.0.0.0:7400", "--insecure"},
			wantErr: "no --redis: dev mode's in-process store"},
		{name: "dev mode beyond loopback when asked for", args: []string{"--listen", "0.0.0.0:7400", "--insecure", "--dev"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.args, env(tc.env))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// TestSecretsFromFiles: every secret can come from a file, named by a flag or by
// a variable; two sources of one secret at the same level are refused; and a
// secret given on the command line is noted, for the warning.
func TestSecretsFromFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secretFile := file("secret", "from-a-file-0123456789\n")
	tokenFile := file("token", "ha_token-from-a-file-0123\n")
	redisFile := file("redis", "redis://:urlpass@127.0.0.1:6379/2\n")
	passFile := file("password", "p4ss word\n")
	empty := file("empty", "\n")

	c, err := parseConfig([]string{"--admin-token-file", tokenFile}, env(map[string]string{
		"HERALD_SECRET_FILE": secretFile, "HERALD_REDIS_FILE": redisFile, "HERALD_REDIS_PASSWORD_FILE": passFile,
		"HERALD_ADMIN_TOKEN": "ignored: the command line wins"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Secret != "from-a-file-0123456789" || c.AdminToken != "ha_token-from-a-file-0123" ||
		c.Redis != "redis://:urlpass@127.0.0.1:6379/2" || c.RedisPassword != "p4ss word" || c.Dev {
		t.Fatalf("config = %+v", c)
	}
	if len(c.commandLineSecrets) != 0 {
		t.Errorf("secrets from files noted as on the command line: %v", c.commandLineSecrets)
	}
	// The password from its file is the one Redis is asked for, not the URL's.
	rdb, err := connect(c.Redis, false, c.RedisPassword)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if got := rdb.(*redis.Client).Options().Password; got != "p4ss word" {
		t.Errorf("Redis password %q, want the file's", got)
	}

	c, err = parseConfig([]string{"--secret", "on-the-command-line-0", "--redis", "redis://:pw@127.0.0.1:6379"},
		env(map[string]string{"HERALD_ADMIN_TOKEN_FILE": tokenFile}))
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminToken != "ha_token-from-a-file-0123" || !slices.Equal(c.commandLineSecrets, []string{"--redis", "--secret"}) {
		t.Errorf("admin token %q, secrets on the command line %v", c.AdminToken, c.commandLineSecrets)
	}
	c, err = parseConfig([]string{"--redis", "redis://127.0.0.1:6379"}, env(with(prodEnv(), "HERALD_REDIS", "")))
	if err != nil || len(c.commandLineSecrets) != 0 {
		t.Errorf("a Redis URL without a password is no secret: %v, %v", c.commandLineSecrets, err)
	}

	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"flag and its file", []string{"--secret", "0123456789abcdef0", "--secret-file", secretFile}, prodEnv(),
			"give --secret or --secret-file, not both"},
		{"variable and its file", nil, with(prodEnv(), "HERALD_ADMIN_TOKEN_FILE", tokenFile),
			"set HERALD_ADMIN_TOKEN or HERALD_ADMIN_TOKEN_FILE, not both"},
		{"a file that is not there", []string{"--log-key-file", filepath.Join(dir, "nothing")}, prodEnv(), "--log-key-file"},
		{"an empty file", nil, with(prodEnv(), "HERALD_SECRET", "", "HERALD_SECRET_FILE", empty), "is empty"},
		{"a Redis password without Redis", nil, map[string]string{"HERALD_REDIS_PASSWORD": "pw"}, "a Redis password needs --redis"},
	} {
		if _, err := parseConfig(tc.args, env(tc.env)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.wantErr)
		}
	}
}

// TestHeralddServesTLSAndAdminApart runs heraldd as an operator would, with TLS from
// certificate files and every secret from a file, and checks from outside: the
// public listener speaks TLS and does not serve AdminService; the admin listener
// does, to the admin token from its file; the password Redis asks for came from a
// file; no secret is on the command line; and plaintext beyond loopback is refused.
func TestHeralddServesTLSAndAdminApart(t *testing.T) {
	t.Parallel()
	bin := buildHeraldd(t)
	dir := t.TempDir()
	ca := testcert.NewCA(t, "herald test CA")
	certFile, keyFile := ca.Server(t, "127.0.0.1").Files(t, dir, "server")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const adminToken, secretValue = "ha_admin-token-from-a-file", "hmac-secret-from-a-file-0123"
	rs := redistest.Start(t)
	environ := []string{"HERALD_SECRET_FILE=" + write("secret", secretValue),
		"HERALD_ADMIN_TOKEN_FILE=" + write("admin-token", adminToken), "HERALD_LOG_LEVEL=warn"}
	if !redistest.Memory() {
		const password = "redis-password-from-a-file"
		if err := rs.Client.ConfigSet(t.Context(), "requirepass", password).Err(); err != nil {
			t.Fatal(err)
		}
		environ = append(environ, "HERALD_REDIS_PASSWORD_FILE="+write("redis-password", password))
	}
	environ = append(environ, "HERALD_REDIS_FILE="+write("redis", rs.URL))

	addr, _ := reserve(t)
	adminAddr, _ := reserve(t)
	cmd := exec.Command(bin, "--listen", addr, "--admin-listen", adminAddr,
		"--tls-cert-file", certFile, "--tls-key-file", keyFile)
	cmd.Env = append(os.Environ(), environ...)
	cmd.Stderr = &lineLog{t: t, prefix: "heraldd: "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })

	dialTLS := func(addr string) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	admin := heraldv1.NewAdminServiceClient(dialTLS(adminAddr))
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(bearer(adminToken), time.Second)
		_, err := admin.CreateBusiness(ctx, &heraldv1.CreateBusinessRequest{DisplayName: "Acme"})
		cancel()
		if err == nil {
			break // the admin token from its file, over TLS, and Redis with the password from its file
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admin listener did not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, err := heraldv1.NewAdminServiceClient(dialTLS(addr)).CreateBusiness(bearer(adminToken),
		&heraldv1.CreateBusinessRequest{DisplayName: "Acme"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("AdminService on the public listener: %v, want UNIMPLEMENTED", err)
	}
	if cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline"); err == nil {
		for _, s := range []string{adminToken, secretValue} {
			if bytes.Contains(cmdline, []byte(s)) {
				t.Errorf("a secret is on heraldd's command line: %q", cmdline)
			}
		}
	}

	// Plaintext on all interfaces is refused before anything starts.
	out, err := exec.Command(bin, "--listen", "0.0.0.0:0", "--redis", rs.URL, "--secret", secretValue,
		"--admin-token", adminToken).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "give --insecure") {
		t.Errorf("plaintext on 0.0.0.0: %v, output %s; want exit status 2 and a word on --insecure", err, out)
	}

	// --version comes from the build information.
	out, err = exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "heraldd ") || !strings.Contains(string(out), "go1.") {
		t.Errorf("--version: %q, %v", out, err)
	}
}
