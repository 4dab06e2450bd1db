package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/testcert"
	"github.com/heraldhq/herald/server"
)

// tlsGateway starts a real gateway whose two listeners speak TLS from files.
func tlsGateway(t *testing.T, files server.TLSFiles) (addr, adminAddr string) {
	t.Helper()
	cfg, err := server.TLSConfig(files, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return startGateway(t, "admin-token-0123456789", func(c *server.Config) { c.TLS, c.AdminTLS = cfg, cfg })
}

// TestTLSWithTheCLI: the CLI reaches a TLS gateway with --ca (and, for mutual TLS,
// a client certificate), and when it and the gateway disagree about TLS, or it
// does not trust the certificate, or it sends an admin command to the public
// listener, the error says which flag fixes it.
func TestTLSWithTheCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testcert.NewCA(t, "herald test CA")
	caFile := ca.File(t, dir, "ca")
	certFile, keyFile := ca.Server(t, "127.0.0.1").Files(t, dir, "server")
	addr, adminAddr := tlsGateway(t, server.TLSFiles{CertFile: certFile, KeyFile: keyFile})
	plainAddr, plainAdminAddr := startGateway(t, "admin-token-0123456789")
	clientCA := testcert.NewCA(t, "herald clients CA")
	mtlsAddr, mtlsAdminAddr := tlsGateway(t, server.TLSFiles{CertFile: certFile, KeyFile: keyFile,
		ClientCAFile: clientCA.File(t, dir, "clients")})
	clientCert, clientKey := clientCA.Client(t, "ops").Files(t, dir, "ops")

	vars := func(addr, adminAddr string, more ...string) map[string]string {
		v := map[string]string{"HERALD_ADDR": addr, "HERALD_ADMIN_ADDR": adminAddr, "HERALD_STATE": t.TempDir(),
			"HERALD_ADMIN_TOKEN": "admin-token-0123456789"}
		for i := 0; i+1 < len(more); i += 2 {
			v[more[i]] = more[i+1]
		}
		return v
	}
	createBusiness := []string{"admin", "create-business", "--name", "Acme"}

	// The way in: --ca, from the flag or the environment, for both listeners.
	mustHerald(t, exitOK, vars(addr, adminAddr), append([]string{"--ca", caFile}, createBusiness...)...)
	mustHerald(t, exitOK, vars(addr, adminAddr, "HERALD_CA", caFile), createBusiness...)
	tls := vars(addr, adminAddr, "HERALD_CA", caFile)
	code := strings.TrimSpace(mustHerald(t, exitOK, tls, "admin", "issue-code", "+14155550123"))
	mustHerald(t, exitOK, tls, "device", "register", "--phone", "+14155550123", "--code", code)
	// Mutual TLS: the client certificate too.
	mustHerald(t, exitOK, vars(mtlsAddr, mtlsAdminAddr, "HERALD_CA", caFile),
		append([]string{"--client-cert", clientCert, "--client-key", clientKey}, createBusiness...)...)

	for _, tc := range []struct {
		name string
		vars map[string]string
		args []string
		hint string
	}{
		{"plaintext to a TLS gateway (the loopback default)", vars(addr, adminAddr), createBusiness,
			"hint: " + adminAddr + " speaks TLS: use --tls"},
		{"plaintext device call to a TLS gateway", vars(addr, adminAddr),
			[]string{"device", "register", "--phone", "+14155550124", "--code", "12345678"},
			"hint: " + addr + " speaks TLS: use --tls"},
		{"TLS to a plaintext gateway", vars(plainAddr, plainAdminAddr), append([]string{"--tls"}, createBusiness...),
			"hint: " + plainAdminAddr + " speaks plaintext, not TLS: use --tls=false"},
		{"a CA this machine does not trust", vars(addr, adminAddr), append([]string{"--tls"}, createBusiness...),
			"hint: the gateway's certificate is not signed by a CA this machine trusts: give the CA's certificate with --ca FILE"},
		{"no client certificate for mutual TLS", vars(mtlsAddr, mtlsAdminAddr, "HERALD_CA", caFile), createBusiness,
			"hint: the gateway asks for a client certificate (mutual TLS): give --client-cert FILE and --client-key FILE"},
		{"an admin command to the public listener", vars(addr, addr, "HERALD_CA", caFile), createBusiness,
			"hint: " + addr + " does not serve AdminService: admin commands go to the gateway's admin listener, --admin-addr"},
	} {
		got, stdout, stderr := herald(t, tc.vars, tc.args...)
		if got != exitError || !strings.Contains(stderr, tc.hint) {
			t.Errorf("%s: exit %d, stdout %q, stderr:\n%s\nwant exit 1 and %q", tc.name, got, stdout, stderr, tc.hint)
		}
	}

	// --json carries the hint too.
	_, _, stderr := herald(t, vars(addr, adminAddr), append([]string{"--json"}, createBusiness...)...)
	if !strings.Contains(stderr, `"hint":"`+adminAddr+` speaks TLS: use --tls`) {
		t.Errorf("--json error without the hint: %s", stderr)
	}
	// Flags that contradict each other are said so before dialing.
	got, _, stderr := herald(t, vars(addr, adminAddr), append([]string{"--tls=false", "--ca", caFile}, createBusiness...)...)
	if got != exitError || !strings.Contains(stderr, "--tls=false leaves --ca and --client-cert unused") {
		t.Errorf("--tls=false with --ca: exit %d, stderr %s", got, stderr)
	}
}
