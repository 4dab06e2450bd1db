package main

// tls.go holds the client's side of TLS: the configuration the flags make, and the
// hints that turn a TLS disagreement between the CLI and the gateway into the flag
// that fixes it. gRPC reports such a disagreement as UNAVAILABLE with words like
// "error reading server preface: EOF", which say nothing of TLS.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// dialed is the address a command dialed last, and whether with TLS.
type dialed struct {
	addr string
	tls  bool
}

// tlsConfig is the client TLS configuration the settings ask for.
func (c *Config) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12} // nil RootCAs: the system roots
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it", c.CA)
		}
	}
	switch {
	case c.ClientCert != "" && c.ClientKey != "":
		cert, err := tls.LoadX509KeyPair(c.ClientCert, c.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("--client-cert, --client-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case c.ClientCert != "" || c.ClientKey != "":
		return nil, errors.New("--client-cert and --client-key go together")
	}
	return cfg, nil
}

// hintedError is an error with a line on what to do about it.
type hintedError struct {
	err  error
	hint string
}

func (e *hintedError) Error() string { return e.err.Error() }
func (e *hintedError) Unwrap() error { return e.err }

// hintOf is the hint an error carries, or "".
func hintOf(err error) string {
	var h *hintedError
	if errors.As(err, &h) {
		return h.hint
	}
	return ""
}

// explain adds a hint to an error a gateway's transport caused: TLS on one side and
// plaintext on the other, a certificate this machine does not trust or that names
// another host, a gateway that asks for a client certificate or refuses this one, an
// admin command sent to the public listener. The words of gRPC's error depend on
// timing (a refused client certificate can read as "broken pipe"), so for a call that
// could not connect it shakes hands with the gateway once more, by itself, and reads
// the cause from that.
func (c *cli) explain(ctx context.Context, err error) error {
	d := c.cfg.dialed
	st, ok := grpcStatus(err)
	if d.addr == "" || !ok {
		return err
	}
	var hint string
	switch {
	case st.Code() == codes.Unimplemented && strings.Contains(st.Message(), "herald.v1.AdminService"):
		hint = fmt.Sprintf("%s does not serve AdminService: admin commands go to the gateway's admin listener, "+
			"--admin-addr (HERALD_ADMIN_ADDR, default %s)", d.addr, defaultAdminAddr)
	case st.Code() != codes.Unavailable:
	case !d.tls:
		// Anything that answers a TLS handshake, even with a refusal, speaks TLS. The
		// handshake sends nothing, so it need not verify whom it reached.
		if perr := handshake(ctx, d.addr, &tls.Config{InsecureSkipVerify: true}); perr == nil || isAlert(perr) {
			hint = fmt.Sprintf("%s speaks TLS: use --tls, with --ca FILE if its certificate is not from a public CA", d.addr)
		}
	default:
		cfg, cerr := c.cfg.tlsConfig()
		if cerr != nil {
			return err
		}
		hint = c.cfg.tlsHint(d.addr, handshake(ctx, d.addr, cfg))
	}
	if hint == "" {
		return err
	}
	return &hintedError{err: err, hint: hint}
}

// tlsHint says what to do about the error of a TLS handshake with addr.
func (c *Config) tlsHint(addr string, err error) string {
	var header tls.RecordHeaderError
	var name x509.HostnameError
	var authority x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &header):
		return fmt.Sprintf("%s speaks plaintext, not TLS: use --tls=false (and no --ca or --client-cert)", addr)
	case errors.As(err, &name):
		return fmt.Sprintf("the gateway's certificate does not name the host of %s: dial it by a name its certificate has", addr)
	case errors.As(err, &authority):
		return "the gateway's certificate is not signed by a CA this machine trusts: give the CA's certificate with --ca FILE (HERALD_CA)"
	case errors.As(err, &verify):
		return fmt.Sprintf("the gateway's certificate does not verify (%v)", verify.Err)
	case isAlert(err) && c.ClientCert == "":
		return "the gateway asks for a client certificate (mutual TLS): give --client-cert FILE and --client-key FILE"
	case isAlert(err):
		return "the gateway refused the client certificate: is it issued by the CA the gateway trusts, and still valid?"
	}
	return ""
}

// handshake makes a TLS connection to addr as cfg says, and sends nothing on it: no
// token, no call. In TLS 1.3 a server refuses a client certificate only after the
// client's side of the handshake is done, so it also reads what the server sends
// first (gRPC's settings, or the refusal).
func handshake(ctx context.Context, addr string, cfg *tls.Config) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil // a unix socket or a resolver URL: not a port to probe
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetReadDeadline(deadline)
	if _, err := conn.Read(make([]byte, 1)); isAlert(err) {
		return err
	}
	return nil
}

// isAlert tells whether err is a TLS alert the other side sent.
func isAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}
