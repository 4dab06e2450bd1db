package main

import (
	"flag"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// defaultAddr and defaultAdminAddr are where heraldd's public and admin listeners
// are by default (and in dev mode).
const (
	defaultAddr      = "127.0.0.1:7400"
	defaultAdminAddr = "127.0.0.1:7401"
)

// Config is the CLI's global settings. Each comes from its environment variable
// first and then from its flag, so a flag always beats the environment. Global flags
// may be given before the command or among the command's own flags.
type Config struct {
	// Addr is the gateway's host:port (--addr, HERALD_ADDR).
	Addr string
	// AdminAddr is the gateway's admin listener, where the admin commands go
	// (--admin-addr, HERALD_ADMIN_ADDR).
	AdminAddr string
	// TLS says whether to speak TLS (--tls). Left unset, it is TLS when a CA or a
	// client certificate is given, and otherwise plaintext for a loopback address
	// (the dev gateway) and TLS for anything else, so a token is never sent in clear
	// over a network by default.
	TLS optionalBool
	// CA is a PEM file of the CAs that the gateway's certificate must chain to, in
	// place of the system roots (--ca, HERALD_CA).
	CA string
	// ClientCert and ClientKey are the certificate this client presents to a gateway
	// that asks for one, mutual TLS (--client-cert and --client-key, HERALD_CLIENT_CERT
	// and HERALD_CLIENT_KEY).
	ClientCert, ClientKey string
	// Token is the --token flag only: an admin token or an API key, whichever the
	// command needs. Tokens from the environment are resolved per command group by
	// token, so that one shell can hold both kinds.
	Token string
	// StateDir holds one file per registered device and one signing key per business
	// that sent from here (--state, HERALD_STATE).
	StateDir string
	// JSON asks for machine-readable output: each response as one line of JSON (--json).
	JSON bool
	// LogKey is the gateway's key log public key (--log-key, HERALD_LOG_PUBLIC_KEY):
	// with it, devices open only messages whose business key the log publishes (a
	// device keeps the checkpoint it saw in its state), and send seals only to device
	// keys the log publishes.
	LogKey string

	// addrExplicit is true when Addr was chosen by flag or environment; device
	// commands otherwise use the address the device registered with.
	addrExplicit bool
	getenv       func(string) string
	// dialed is the last address dialed, to explain a transport error.
	dialed dialed
}

// loadConfig reads the environment; flags are applied later by bind and noteFlags.
func loadConfig(getenv func(string) string) Config {
	c := Config{Addr: defaultAddr, AdminAddr: defaultAdminAddr, StateDir: getenv("HERALD_STATE"),
		LogKey: getenv("HERALD_LOG_PUBLIC_KEY"), CA: getenv("HERALD_CA"),
		ClientCert: getenv("HERALD_CLIENT_CERT"), ClientKey: getenv("HERALD_CLIENT_KEY"), getenv: getenv}
	if a := getenv("HERALD_ADDR"); a != "" {
		c.Addr, c.addrExplicit = a, true
	}
	if a := getenv("HERALD_ADMIN_ADDR"); a != "" {
		c.AdminAddr = a
	}
	if c.StateDir == "" {
		c.StateDir = defaultStateDir(getenv)
	}
	return c
}

// defaultStateDir follows the XDG base directory spec, which ignores a relative
// XDG_CONFIG_HOME. It returns "" when there is no home to put state in; device
// commands then ask for --state.
func defaultStateDir(getenv func(string) string) string {
	if x := getenv("XDG_CONFIG_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "herald")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "herald")
	}
	return ""
}

// bind registers the global flags on fs with the current values as defaults, so that
// parsing fs changes only what is given on its command line.
func (c *Config) bind(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "gateway `host:port` (HERALD_ADDR)")
	fs.StringVar(&c.AdminAddr, "admin-addr", c.AdminAddr, "the gateway's admin listener, `host:port`, for admin commands (HERALD_ADMIN_ADDR)")
	fs.Var(&c.TLS, "tls", "use TLS; default: with --ca or --client-cert, or for non-loopback addresses")
	fs.StringVar(&c.CA, "ca", c.CA, "PEM `file` of the CAs the gateway's certificate must chain to, instead of the system roots (HERALD_CA)")
	fs.StringVar(&c.ClientCert, "client-cert", c.ClientCert, "PEM `file` of the client certificate for a gateway that asks for one (HERALD_CLIENT_CERT)")
	fs.StringVar(&c.ClientKey, "client-key", c.ClientKey, "PEM `file` of the client certificate's key (HERALD_CLIENT_KEY)")
	fs.StringVar(&c.Token, "token", c.Token, "admin token or API key (HERALD_TOKEN)")
	fs.StringVar(&c.StateDir, "state", c.StateDir, "`dir`ectory of device state and business signing keys (HERALD_STATE)")
	fs.BoolVar(&c.JSON, "json", c.JSON, "print machine-readable JSON, one object per line")
	fs.StringVar(&c.LogKey, "log-key", c.LogKey, "the gateway's key log public `KEY`: check every key against the log (HERALD_LOG_PUBLIC_KEY)")
}

// noteFlags records what parsing fs decided that the values alone do not tell.
func (c *Config) noteFlags(fs *flag.FlagSet) {
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "addr" {
			c.addrExplicit = true
		}
	})
}

// useTLS applies the TLS rule of Config.TLS to addr.
func (c *Config) useTLS(addr string) bool {
	switch {
	case c.TLS.set:
		return c.TLS.value
	case c.CA != "" || c.ClientCert != "":
		return true
	}
	return !isLoopback(addr)
}

// isLoopback reports whether addr can only reach this machine.
func isLoopback(addr string) bool {
	if strings.HasPrefix(addr, "unix:") || strings.HasPrefix(addr, "unix-abstract:") {
		return true
	}
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// tokenKind is a credential the CLI takes from its settings: an admin token or an
// API key. Each has its own environment variable that beats HERALD_TOKEN for the
// commands that need it. (A device's token is in its state file.)
type tokenKind struct {
	env  string // e.g. HERALD_API_KEY
	what string // for messages: "API key"
}

var (
	adminToken = tokenKind{env: "HERALD_ADMIN_TOKEN", what: "admin token"}
	apiKey     = tokenKind{env: "HERALD_API_KEY", what: "API key"}
)

// token is the token for kind: --token, kind's environment variable, HERALD_TOKEN.
// It returns "" when there is none; callers say which variable to set.
func (c *Config) token(kind tokenKind) string {
	if c.Token != "" {
		return c.Token
	}
	if t := c.getenv(kind.env); t != "" {
		return t
	}
	return c.getenv("HERALD_TOKEN")
}

// optionalBool is a boolean flag that knows whether it was given, for settings
// whose default depends on another setting.
type optionalBool struct {
	set, value bool
}

func (b *optionalBool) String() string {
	if b == nil || !b.set {
		return "auto"
	}
	return strconv.FormatBool(b.value)
}

func (b *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	b.set, b.value = true, v
	return nil
}

// IsBoolFlag lets --tls stand alone, as a bool flag does.
func (b *optionalBool) IsBoolFlag() bool { return true }
