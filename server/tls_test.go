package server

import (
	"context"
	"crypto/tls"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/testcert"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// tlsGateway starts a gateway whose two listeners serve TLS from files, and returns
// the public and the admin listener's addresses.
func tlsGateway(t *testing.T, files TLSFiles) (addr, adminAddr string) {
	t.Helper()
	cfg, err := TLSConfig(files, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, func(c *Config) { c.TLS, c.AdminTLS = cfg, cfg })
	return g.conn.Target(), g.adminConn.Target()
}

// dialTLS connects to addr with TLS as config says; the connection closes with the
// test.
func dialTLS(t *testing.T, addr string, config *tls.Config) *grpc.ClientConn {
	t.Helper()
	return dial(t, addr, credentials.NewTLS(config))
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// check asks the health service over conn, on a new connection, and returns the
// serial number of the certificate the gateway presented.
func check(conn *grpc.ClientConn) (*big.Int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return nil, err
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, nil
	}
	return info.State.PeerCertificates[0].SerialNumber, nil
}

// TestTLSClientVerifiesTheGateway: with certificate files, both listeners speak TLS
// with the certificate; a client that trusts the CA gets through, one that trusts
// another CA refuses the gateway, and a plaintext client gets UNAVAILABLE.
func TestTLSClientVerifiesTheGateway(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testcert.NewCA(t, "herald test CA")
	srvCert := ca.Server(t, "127.0.0.1")
	certFile, keyFile := srvCert.Files(t, dir, "server")
	addr, adminAddr := tlsGateway(t, TLSFiles{CertFile: certFile, KeyFile: keyFile})

	for _, a := range []string{addr, adminAddr} {
		serial, err := check(dialTLS(t, a, &tls.Config{RootCAs: ca.Pool}))
		if err != nil {
			t.Fatalf("%s: TLS client that trusts the CA: %v", a, err)
		}
		if serial.Cmp(srvCert.Serial) != 0 {
			t.Fatalf("%s: served certificate %v, want %v", a, serial, srvCert.Serial)
		}
	}
	other := testcert.NewCA(t, "another CA")
	_, err := check(dialTLS(t, addr, &tls.Config{RootCAs: other.Pool}))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("client that trusts another CA: %v, want UNAVAILABLE about the certificate", err)
	}
	_, err = check(dial(t, addr, insecure.NewCredentials()))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext client against TLS: %v, want UNAVAILABLE", err)
	}
}

// TestMutualTLS: with a client CA, a client must present a certificate from that
// CA: none, or one from another CA, is refused in the handshake, before any call.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testcert.NewCA(t, "herald test CA")
	clientCA := testcert.NewCA(t, "herald clients CA")
	certFile, keyFile := ca.Server(t, "127.0.0.1").Files(t, dir, "server")
	addr, _ := tlsGateway(t, TLSFiles{CertFile: certFile, KeyFile: keyFile, ClientCAFile: clientCA.File(t, dir, "clients")})

	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{
		{"no client certificate", nil, false},
		{"a certificate from another CA", []tls.Certificate{ca.Client(t, "stranger").TLS}, false},
		{"a certificate from the client CA", []tls.Certificate{clientCA.Client(t, "ops").TLS}, true},
	} {
		_, err := check(dialTLS(t, addr, &tls.Config{RootCAs: ca.Pool, Certificates: tc.certs}))
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v, want it accepted", tc.name, err)
		case !tc.ok && status.Code(err) != codes.Unavailable:
			t.Errorf("%s: %v, want UNAVAILABLE (refused in the handshake)", tc.name, err)
		}
	}
}

// TestCertificateReloadedWithoutRestart: a certificate renewed on disk is what new
// connections get, with no restart; a renewal that does not load (a key that does
// not match) leaves the last good certificate in service until the files are fixed.
func TestCertificateReloadedWithoutRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testcert.NewCA(t, "herald test CA")
	first := ca.Server(t, "127.0.0.1")
	certFile, keyFile := first.Files(t, dir, "server")
	addr, _ := tlsGateway(t, TLSFiles{CertFile: certFile, KeyFile: keyFile})
	served := func() *big.Int {
		t.Helper()
		serial, err := check(dialTLS(t, addr, &tls.Config{RootCAs: ca.Pool}))
		if err != nil {
			t.Fatal(err)
		}
		return serial
	}
	if got := served(); got.Cmp(first.Serial) != 0 {
		t.Fatalf("served %v, want the first certificate %v", got, first.Serial)
	}

	// A renewal whose key does not match: the first certificate stays in service.
	second := ca.Server(t, "127.0.0.1")
	second.Files(t, dir, "server")
	ca.Server(t, "127.0.0.1").Files(t, dir, "unrelated")
	if err := os.Rename(filepath.Join(dir, "unrelated.key"), keyFile); err != nil {
		t.Fatal(err)
	}
	if got := served(); got.Cmp(first.Serial) != 0 {
		t.Fatalf("with a mismatched key served %v, want the first certificate %v still", got, first.Serial)
	}

	// The matching key lands: the renewal is in service for new connections.
	second.Files(t, dir, "server")
	if got := served(); got.Cmp(second.Serial) != 0 {
		t.Fatalf("after the renewal served %v, want the new certificate %v", got, second.Serial)
	}
}

// TestAdminServiceOnlyOnTheAdminListener: the public listener does not serve
// AdminService, even to the admin token, and the admin listener serves nothing else.
func TestAdminServiceOnlyOnTheAdminListener(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	_, err := heraldv1.NewAdminServiceClient(g.conn).CreateBusiness(g.adminCtx(),
		&heraldv1.CreateBusinessRequest{DisplayName: "Acme"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("AdminService on the public listener: %v, want UNIMPLEMENTED", err)
	}
	if _, err := g.admin.CreateBusiness(g.adminCtx(), &heraldv1.CreateBusinessRequest{DisplayName: "Acme"}); err != nil {
		t.Fatalf("AdminService on the admin listener: %v", err)
	}
	_, err = heraldv1.NewMessagingServiceClient(g.adminConn).LookupRecipient(context.Background(),
		&heraldv1.LookupRecipientRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("MessagingService on the admin listener: %v, want UNIMPLEMENTED", err)
	}
	// Both answer health, for load balancers and operators' probes.
	for _, conn := range []*grpc.ClientConn{g.conn, g.adminConn} {
		if _, err := check(conn); err != nil {
			t.Fatalf("health on %s: %v", conn.Target(), err)
		}
	}
}
