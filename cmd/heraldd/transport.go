package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/server"
)

// defaultAdminListen keeps AdminService on this machine unless the operator says
// otherwise.
const defaultAdminListen = "127.0.0.1:7401"

// transportFlags defines the flags of the listeners' TLS, the admin listener, the
// Redis password and --version on fs, and returns the secrets among them.
func transportFlags(fs *flag.FlagSet, c *Config, env func(name, def string) string) []*secret {
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", env("HERALD_TLS_CERT_FILE", ""),
		"PEM certificate chain both listeners serve, reloaded when the file changes; needs --tls-key-file (HERALD_TLS_CERT_FILE)")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", env("HERALD_TLS_KEY_FILE", ""),
		"PEM private key of --tls-cert-file (HERALD_TLS_KEY_FILE)")
	fs.StringVar(&c.TLSClientCAFile, "tls-client-ca-file", env("HERALD_TLS_CLIENT_CA_FILE", ""),
		"PEM CAs: the public listener requires a client certificate that chains to one of them, mutual TLS (HERALD_TLS_CLIENT_CA_FILE)")
	fs.StringVar(&c.AdminListen, "admin-listen", env("HERALD_ADMIN_LISTEN", defaultAdminListen),
		"the admin listener's address, the only one that serves AdminService; empty: none (HERALD_ADMIN_LISTEN)")
	fs.StringVar(&c.AdminTLSClientCAFile, "admin-tls-client-ca-file", env("HERALD_ADMIN_TLS_CLIENT_CA_FILE", ""),
		"PEM CAs the admin listener requires client certificates from; default --tls-client-ca-file (HERALD_ADMIN_TLS_CLIENT_CA_FILE)")
	insecure, _ := strconv.ParseBool(env("HERALD_INSECURE", "false"))
	fs.BoolVar(&c.Insecure, "insecure", insecure,
		"let a listener beyond loopback serve plaintext, for a network that encrypts by other means (HERALD_INSECURE)")
	fs.BoolVar(&c.Version, "version", false, "print the version and exit")
	return []*secret{secretVar(fs, &c.RedisPassword, "redis-password", "HERALD_REDIS_PASSWORD", false, "Redis password",
		"used in place of a password in the Redis URL")}
}

// validateTransport checks the listeners: TLS files that go together, and no
// plaintext beyond loopback unless Insecure.
func (c *Config) validateTransport() error {
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			return fmt.Errorf("--admin-listen %q: %w", c.AdminListen, err)
		}
		if c.AdminListen == c.Listen {
			return errors.New("--admin-listen must differ from --listen: AdminService has a listener of its own")
		}
	}
	switch {
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		return errors.New("--tls-cert-file and --tls-key-file go together")
	case c.TLSCertFile == "" && (c.TLSClientCAFile != "" || c.AdminTLSClientCAFile != ""):
		return errors.New("a client CA (mutual TLS) needs TLS: give --tls-cert-file and --tls-key-file")
	case c.TLSCertFile != "" || c.Insecure:
		return nil
	}
	for _, l := range []struct{ flag, addr string }{{"--listen", c.Listen}, {"--admin-listen", c.AdminListen}} {
		if l.addr != "" && !isLoopback(l.addr) {
			return fmt.Errorf("%s %s reaches beyond this machine, and tokens would cross the network in clear: "+
				"serve TLS (--tls-cert-file and --tls-key-file), or give --insecure if the network encrypts "+
				"by other means (a service mesh, a private link)", l.flag, l.addr)
		}
	}
	return nil
}

// isLoopback tells whether a listen address can be reached only from this machine.
// A host name other than localhost counts as beyond: what it resolves to can change.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// tlsConfigs are the listeners' TLS configurations, each following its files; nil
// (plaintext) without --tls-cert-file.
func (c *Config) tlsConfigs(log *slog.Logger) (public, admin *tls.Config, err error) {
	if c.TLSCertFile == "" {
		return nil, nil, nil
	}
	files := server.TLSFiles{CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile, ClientCAFile: c.TLSClientCAFile}
	if public, err = server.TLSConfig(files, log.With("listener", "public")); err != nil {
		return nil, nil, err
	}
	if c.AdminTLSClientCAFile != "" {
		files.ClientCAFile = c.AdminTLSClientCAFile
	}
	if admin, err = server.TLSConfig(files, log.With("listener", "admin")); err != nil {
		return nil, nil, err
	}
	return public, admin, nil
}
