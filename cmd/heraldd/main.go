// Command heraldd is the Herald gateway.
//
// With no --redis it runs in dev mode on an in-process store (data is lost on exit),
// so it starts on a machine that has only Go. Every flag has an environment variable
// equivalent (shown in -help); a flag given on the command line wins.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/business"
	"github.com/heraldhq/herald/delivery"
	"github.com/heraldhq/herald/internal/memstore"
	"github.com/heraldhq/herald/internal/version"
	"github.com/heraldhq/herald/keylog"
	"github.com/heraldhq/herald/server"
	"github.com/redis/go-redis/v9"
)

// Config is heraldd's configuration.
type Config struct {
	// Listen is the gRPC address.
	Listen string
	// Redis is a redis:// or rediss:// URL; empty means dev mode on the in-process store.
	Redis string
	// RedisCluster treats Redis as a Redis Cluster seed URL
	// (redis://host:port?addr=host2:port2).
	RedisCluster bool
	// Secret keys the phone-number HMAC; at least 16 bytes, the same on every gateway.
	Secret string
	// AdminToken authorises AdminService; at least 16 bytes.
	AdminToken string
	// Dev relaxes the above: a missing secret or admin token is generated (and the
	// admin token printed), logs are at debug level.
	Dev bool
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// ShutdownTimeout bounds a graceful shutdown.
	ShutdownTimeout time.Duration
	// Caps are every recipient's protections (blocklist.DefaultCaps by default).
	Caps blocklist.Caps
	// Quality is when spam reports step a business's limits down.
	Quality business.QualityPolicy
	// Replicas is how many gateways run side by side (a floor; they count each other).
	Replicas int
	// ReceiptWindow is how long a message that reached a device is kept for late read
	// receipts and reports (delivery.WithReceiptWindow).
	ReceiptWindow time.Duration
	// ApprovalWait is how long a new device of a number that has devices waits for
	// approval before it becomes active unrefused (delivery.WithApprovalWait).
	ApprovalWait time.Duration
	// LogKey is the key log's signing key (PRIVATE+KEY+… from keylog.GenerateKey); empty
	// runs without a key log (generated in dev mode).
	LogKey string
	// Push is where devices are woken.
	Push PushConfig

	// Transport, secrets and the build (transport.go, secrets.go).

	// TLSCertFile and TLSKeyFile are the certificate both listeners serve, reloaded
	// when the files change; without them the listeners serve plaintext, which a
	// listener beyond loopback gets only with Insecure.
	TLSCertFile, TLSKeyFile string
	// TLSClientCAFile makes the public listener require client certificates that
	// chain to its CAs (mutual TLS).
	TLSClientCAFile string
	// AdminListen is the admin listener's address, where AdminService is served and
	// only there; empty serves no admin listener.
	AdminListen string
	// AdminTLSClientCAFile makes the admin listener require client certificates that
	// chain to its CAs; empty means TLSClientCAFile.
	AdminTLSClientCAFile string
	// Insecure lets a listener beyond loopback serve plaintext, for a network that
	// encrypts by other means.
	Insecure bool
	// RedisPassword, when set, is the Redis password, in place of one in the URL.
	RedisPassword string
	// Version asks for the version line and nothing else.
	Version bool

	// devAsked is whether dev mode was asked for (--dev), not only implied by no --redis.
	devAsked bool
	// commandLineSecrets names the secrets given on the command line, for a warning.
	commandLineSecrets []string

	// Observability (observe.go); tracing is set by the standard OTEL_* environment.
	//
	// MetricsListen is where Prometheus metrics are served, at /metrics; empty: nowhere.
	MetricsListen string
	// LogFormat is text or json.
	LogFormat string

	// Limits bound what callers can make the gateway hold, and what one business can
	// make Redis hold (server.Limits; README, Limits).
	Limits server.Limits
}

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return
	case err != nil:
		fmt.Fprintln(os.Stderr, "heraldd:", err)
		os.Exit(2)
	case cfg.Version:
		fmt.Println(version.String("heraldd"))
		return
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "heraldd:", err)
		os.Exit(1)
	}
}

func parseConfig(args []string, getenv func(string) string) (Config, error) {
	fs := flag.NewFlagSet("heraldd", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: heraldd [flags]

The Herald gateway. Every flag has an environment variable, named in parentheses; a
flag on the command line beats it. Secrets on the command line show in ps to every
user of the machine: give them as files (--secret-file, HERALD_SECRET_FILE, ...) or in
the environment. Without --redis, heraldd runs dev mode on an in-process store.

`)
		fs.PrintDefaults()
	}
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var c Config
	fs.StringVar(&c.Listen, "listen", env("HERALD_LISTEN", "127.0.0.1:7400"), "gRPC listen address (HERALD_LISTEN)")
	secrets := []*secret{secretVar(fs, &c.Redis, "redis", "HERALD_REDIS", true, "Redis URL",
		"Redis URL, redis://[user:pass@]host:port[/db] or rediss://…; empty runs dev mode on an in-process store")}
	cluster, _ := strconv.ParseBool(env("HERALD_REDIS_CLUSTER", "false"))
	fs.BoolVar(&c.RedisCluster, "redis-cluster", cluster, "the Redis URL is a Redis Cluster seed: redis://host:port?addr=host2:port2 (HERALD_REDIS_CLUSTER)")
	secrets = append(secrets,
		secretVar(fs, &c.Secret, "secret", "HERALD_SECRET", true, "phone-number HMAC secret",
			"secret for the phone-number HMAC, at least 16 bytes, the same on every gateway"),
		secretVar(fs, &c.AdminToken, "admin-token", "HERALD_ADMIN_TOKEN", true, "admin token",
			"admin token for AdminService, at least 16 bytes"))
	dev, _ := strconv.ParseBool(env("HERALD_DEV", "false"))
	fs.BoolVar(&c.Dev, "dev", dev, "dev mode: generate a missing secret and admin token, log at debug level (HERALD_DEV)")
	fs.StringVar(&c.LogLevel, "log-level", env("HERALD_LOG_LEVEL", ""), "debug, info, warn or error; default info, debug in dev mode (HERALD_LOG_LEVEL)")
	timeout, err := time.ParseDuration(env("HERALD_SHUTDOWN_TIMEOUT", "15s"))
	if err != nil {
		return c, fmt.Errorf("HERALD_SHUTDOWN_TIMEOUT: %w", err)
	}
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", timeout, "how long a graceful shutdown may take (HERALD_SHUTDOWN_TIMEOUT)")
	dc, dq := blocklist.DefaultCaps, business.DefaultQualityPolicy
	c.Caps, c.Quality = dc, dq
	var errs []error
	intVar := func(p *int, name, envName string, def int, usage string) {
		v := env(envName, strconv.Itoa(def))
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a whole number", envName, v))
		}
		fs.IntVar(p, name, n, usage+" ("+envName+")")
	}
	durVar := func(p *time.Duration, name, envName string, def time.Duration, usage string) {
		v := env(envName, def.String())
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a duration", envName, v))
		}
		fs.DurationVar(p, name, d, usage+" ("+envName+")")
	}
	intVar(&c.Caps.MarketingPerWindow, "recipient-marketing-cap", "HERALD_RECIPIENT_MARKETING_CAP", dc.MarketingPerWindow,
		"marketing messages one person may get from all businesses together per --recipient-marketing-window; 0: no cap")
	durVar(&c.Caps.MarketingWindow, "recipient-marketing-window", "HERALD_RECIPIENT_MARKETING_WINDOW", dc.MarketingWindow,
		"the rolling window of the recipient marketing cap")
	durVar(&c.Caps.PairInterval, "pair-interval", "HERALD_PAIR_INTERVAL", dc.PairInterval,
		"one business may send one person one message per interval (any category), in bursts of --pair-burst; 0: off")
	intVar(&c.Caps.PairBurst, "pair-burst", "HERALD_PAIR_BURST", dc.PairBurst, "the burst of the pair rate")
	durVar(&c.Caps.NewWindow, "unique-recipient-window", "HERALD_UNIQUE_RECIPIENT_WINDOW", dc.NewWindow,
		"the rolling window of each business's daily unique recipient limit")
	qt := env("HERALD_QUALITY_THRESHOLD", strconv.FormatFloat(dq.Threshold, 'g', -1, 64))
	qv, err := strconv.ParseFloat(qt, 64)
	if err != nil {
		errs = append(errs, fmt.Errorf("HERALD_QUALITY_THRESHOLD=%q: not a number", qt))
	}
	fs.Float64Var(&c.Quality.Threshold, "quality-threshold", qv,
		"spam reports per delivered message above which a business's limits step down one tier (HERALD_QUALITY_THRESHOLD)")
	durVar(&c.Quality.Window, "quality-window", "HERALD_QUALITY_WINDOW", dq.Window, "the rolling window of the quality figure")
	intVar(&c.Replicas, "replicas", "HERALD_REPLICAS", 1,
		"how many gateways run against this Redis; each holds at most burst/(2·replicas) of a business's tokens, which tightens the over-admission bound")
	bindPush(fs, env, &c.Push)
	secrets = append(secrets, secretVar(fs, &c.LogKey, "log-key", "HERALD_LOG_KEY", false, "key log's signing key",
		"PRIVATE+KEY+… from keylog.GenerateKey, the same on every gateway; without it there is no key log"))
	durVar(&c.ApprovalWait, "device-approval-wait", "HERALD_DEVICE_APPROVAL_WAIT", delivery.DefaultApprovalWait,
		"how long a new device of a number that has devices waits for one of them to approve it before it becomes active unless refused")
	durVar(&c.ReceiptWindow, "receipt-window", "HERALD_RECEIPT_WINDOW", delivery.DefaultReceiptWindow,
		"how long a message that reached a device is kept, cut to a small record, for late read receipts and spam reports")
	intVar(&c.Quality.MinDelivered, "quality-min-delivered", "HERALD_QUALITY_MIN_DELIVERED", dq.MinDelivered,
		"deliveries in the window before the quality figure is judged")
	secrets = append(secrets, transportFlags(fs, &c, env)...)
	// Observability.
	fs.StringVar(&c.MetricsListen, "metrics-listen", env("HERALD_METRICS_LISTEN", ""),
		"address to serve Prometheus metrics on, at /metrics (e.g. 127.0.0.1:9464); empty: none (HERALD_METRICS_LISTEN)")
	fs.StringVar(&c.LogFormat, "log-format", env("HERALD_LOG_FORMAT", "text"), "log format: text or json (HERALD_LOG_FORMAT)")

	// What callers can make the gateway hold (server.Limits).
	dl := server.DefaultLimits
	intVar(&c.Limits.MaxConnections, "max-connections", "HERALD_MAX_CONNECTIONS", dl.MaxConnections,
		"client connections kept open at once; more are closed at once (each costs about 70 KiB and its streams)")
	maxStreams := int(dl.MaxStreamsPerConn)
	intVar(&maxStreams, "max-streams-per-connection", "HERALD_MAX_STREAMS_PER_CONNECTION", maxStreams,
		"calls one connection may have open at once")
	intVar(&c.Limits.StreamsPerToken, "streams-per-token", "HERALD_STREAMS_PER_TOKEN", dl.StreamsPerToken,
		"Receive streams per device, and StreamStatus streams per API key, open at once on this gateway")
	intVar(&c.Limits.MaxBatchBytes, "max-batch-bytes", "HERALD_MAX_BATCH_BYTES", dl.MaxBatchBytes,
		"the largest SendBatch request, in bytes (every other method has a smaller limit of its own)")
	intVar(&c.Limits.OpenCalls, "open-calls", "HERALD_OPEN_CALLS", dl.OpenCalls,
		"calls that need no credentials (RegisterDevice, KeyLogService, health, reflection) read at once")
	intVar(&c.Limits.OpenCallsPerPeer, "open-calls-per-peer", "HERALD_OPEN_CALLS_PER_PEER", dl.OpenCallsPerPeer,
		"of those, from one client address (behind a proxy, every call has the proxy's)")
	durVar(&c.Limits.SendTimeout, "send-timeout", "HERALD_SEND_TIMEOUT", dl.SendTimeout,
		"a stream whose client takes no message for this long is ended (what it did not deliver stays queued)")
	durVar(&c.Limits.IdleConnection, "idle-connection", "HERALD_IDLE_CONNECTION", dl.IdleConnection,
		"a connection with no call open for this long is closed")
	pending := strconv.FormatInt(dl.PendingBytesPerBusiness, 10)
	pendingText := env("HERALD_PENDING_BYTES_PER_BUSINESS", pending)
	pendingBytes, err := strconv.ParseInt(pendingText, 10, 64)
	if err != nil {
		errs = append(errs, fmt.Errorf("HERALD_PENDING_BYTES_PER_BUSINESS=%q: not a whole number", pendingText))
	}
	fs.Int64Var(&c.Limits.PendingBytesPerBusiness, "pending-bytes-per-business", pendingBytes,
		"bytes one business's messages in flight may hold in Redis; past it a message is OUTCOME_QUOTA_EXCEEDED; 0: no quota (HERALD_PENDING_BYTES_PER_BUSINESS)")
	lookupText := env("HERALD_LOOKUP_RATE", strconv.FormatFloat(dl.LookupRate, 'g', -1, 64))
	lookupRate, err := strconv.ParseFloat(lookupText, 64)
	if err != nil {
		errs = append(errs, fmt.Errorf("HERALD_LOOKUP_RATE=%q: not a number", lookupText))
	}
	fs.Float64Var(&c.Limits.LookupRate, "lookup-rate", lookupRate,
		"a business's LookupRecipient and RecordConsent calls per second (and burst), as a multiple of its message rate (HERALD_LOOKUP_RATE)")
	// Settings the flags' bindings read leniently: a value that is not one is an
	// error here, not a silent default (HERALD_REDIS_CLUSTER=yes is not false).
	for _, name := range []string{"HERALD_REDIS_CLUSTER", "HERALD_DEV", "HERALD_INSECURE", "HERALD_APNS_SANDBOX"} {
		if v := getenv(name); v != "" {
			if _, err := strconv.ParseBool(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not true or false", name, v))
			}
		}
	}
	if v := getenv("HERALD_WAKE_INTERVAL"); v != "" {
		if _, err := time.ParseDuration(v); err != nil {
			errs = append(errs, fmt.Errorf("HERALD_WAKE_INTERVAL=%q: not a duration", v))
		}
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if maxStreams > 0 {
		c.Limits.MaxStreamsPerConn = uint32(min(maxStreams, 1<<20))
	}
	if c.Limits.PendingBytesPerBusiness == 0 {
		c.Limits.PendingBytesPerBusiness = -1 // no quota: server.Limits reads 0 as "the default"
	}
	if c.Version {
		return c, nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, s := range secrets {
		onCommandLine, err := s.resolve(set, getenv)
		if err != nil {
			return c, err
		}
		if onCommandLine && (s.name != "redis" || hasPassword(c.Redis)) {
			c.commandLineSecrets = append(c.commandLineSecrets, "--"+s.name)
		}
	}
	// Without Redis, dev mode: on loopback by default, elsewhere only when asked for.
	c.devAsked = c.Dev
	if c.Redis == "" {
		c.Dev = true
	}
	if c.LogKey != "" {
		if _, err := keylog.NewSigner(c.LogKey); err != nil {
			return c, fmt.Errorf("key log key: %w", err)
		}
	}
	if _, _, _, err := c.Push.senders(); err != nil {
		return c, err
	}
	return c, c.validate()
}

func (c *Config) validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen %q: %w", c.Listen, err)
	}
	if err := c.validateTransport(); err != nil {
		return err
	}
	if c.Redis == "" && !c.devAsked && !isLoopback(c.Listen) {
		return errors.New("no --redis: dev mode's in-process store keeps everything in memory and loses it on exit, " +
			"and --listen reaches beyond this machine; give --redis (HERALD_REDIS or HERALD_REDIS_FILE), " +
			"or --dev to run the in-process store anyway")
	}
	if c.Redis != "" {
		var err error
		if c.RedisCluster {
			_, err = redis.ParseClusterURL(c.Redis)
		} else {
			_, err = redis.ParseURL(c.Redis)
		}
		if err != nil {
			return fmt.Errorf("--redis: %w", err)
		}
	}
	if c.RedisCluster && c.Redis == "" {
		return errors.New("--redis-cluster needs --redis")
	}
	if c.RedisPassword != "" && c.Redis == "" {
		return errors.New("a Redis password needs --redis")
	}
	if c.Secret == "" && !c.Dev {
		return errors.New("--secret (HERALD_SECRET) is required outside dev mode: at least 16 bytes, the same on every gateway")
	}
	if c.Secret != "" && len(c.Secret) < 16 {
		return errors.New("--secret must be at least 16 bytes")
	}
	if c.AdminToken == "" && !c.Dev {
		return errors.New("--admin-token (HERALD_ADMIN_TOKEN) is required outside dev mode: at least 16 bytes")
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		return errors.New("--admin-token must be at least 16 bytes")
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("--metrics-listen %q: %w", c.MetricsListen, err)
		}
	}
	if c.ShutdownTimeout <= 0 {
		return errors.New("--shutdown-timeout must be positive")
	}
	switch {
	case c.Caps.MarketingPerWindow < 0:
		return errors.New("--recipient-marketing-cap must be 0 or more")
	case c.Caps.MarketingPerWindow > 0 && c.Caps.MarketingWindow <= 0:
		return errors.New("--recipient-marketing-window must be positive")
	case c.Caps.PairInterval < 0:
		return errors.New("--pair-interval must be 0 or more")
	case c.Caps.PairInterval > 0 && c.Caps.PairBurst < 1:
		return errors.New("--pair-burst must be at least 1")
	case c.Caps.NewWindow <= 0:
		return errors.New("--unique-recipient-window must be positive")
	case !(c.Quality.Threshold > 0 && c.Quality.Threshold <= 1):
		return errors.New("--quality-threshold must be above 0 and at most 1")
	case c.Quality.Window < time.Minute:
		return errors.New("--quality-window must be at least 1m")
	case c.Quality.MinDelivered < 1:
		return errors.New("--quality-min-delivered must be at least 1")
	case c.Replicas < 1:
		return errors.New("--replicas must be at least 1")
	case c.ApprovalWait < time.Minute:
		return errors.New("--device-approval-wait must be at least 1m")
	case c.ReceiptWindow < time.Minute:
		return errors.New("--receipt-window must be at least 1m")
	}
	l := c.Limits
	switch {
	case l.MaxConnections < 1:
		return errors.New("--max-connections must be at least 1")
	case l.MaxStreamsPerConn < 1:
		return errors.New("--max-streams-per-connection must be at least 1")
	case l.StreamsPerToken < 1:
		return errors.New("--streams-per-token must be at least 1")
	case l.MaxBatchBytes < 1<<20 || l.MaxBatchBytes > 1<<30:
		return errors.New("--max-batch-bytes must be from 1 MiB (1048576) to 1 GiB")
	case l.OpenCalls < 1 || l.OpenCallsPerPeer < 1:
		return errors.New("--open-calls and --open-calls-per-peer must be at least 1")
	case l.SendTimeout < time.Second:
		return errors.New("--send-timeout must be at least 1s")
	case l.IdleConnection < time.Second:
		return errors.New("--idle-connection must be at least 1s")
	case !(l.LookupRate > 0):
		return errors.New("--lookup-rate must be above 0")
	}
	return nil
}

func run(cfg Config) error {
	level := slog.LevelInfo
	if cfg.Dev {
		level = slog.LevelDebug
	}
	if cfg.LogLevel != "" {
		level.UnmarshalText([]byte(cfg.LogLevel))
	}
	log := newLogger(os.Stderr, cfg.LogFormat, level)
	slog.SetDefault(log)
	if len(cfg.commandLineSecrets) > 0 {
		log.Warn("secrets given on the command line show in ps to every user of this machine; "+
			"give them as files (--NAME-file, HERALD_…_FILE) or in the environment", "flags", strings.Join(cfg.commandLineSecrets, " "))
	}
	publicTLS, adminTLS, err := cfg.tlsConfigs(log)
	if err != nil {
		return err
	}
	redis.SetLogger(redisLogger{log: log.With("component", "go-redis")})
	logOTelErrors(log)
	tp, stopTracing, err := tracerProvider(context.Background(), os.Getenv)
	if err != nil {
		return err
	}
	if tp != nil {
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			stopTracing(ctx)
		}()
	}

	url := cfg.Redis
	if url == "" {
		store, err := memstore.Start()
		if err != nil {
			return err
		}
		defer store.Close()
		url = store.URL()
		log.Warn("DEV MODE: running on an in-process store; all data is lost on exit. Give --redis for real use.")
	}
	if cfg.Secret == "" {
		cfg.Secret = randomHex(32)
		log.Warn("dev mode: generated a random --secret; recipients' data is unreadable after a restart with another secret")
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = "ha_" + randomHex(16)
		// Printed on stdout so scripts can capture it; it is the one token heraldd
		// ever prints, and only in dev mode, where it made it.
		fmt.Printf("admin token: %s\n", cfg.AdminToken)
	}
	if cfg.LogKey == "" && cfg.Dev {
		skey, vkey, err := keylog.GenerateKey("herald-dev-log")
		if err != nil {
			return err
		}
		cfg.LogKey = skey
		fmt.Printf("key log public key: %s\n", vkey)
	}
	webPush, fcm, apns, err := cfg.Push.senders()
	if err != nil {
		return err
	}
	rdb, err := connect(url, cfg.RedisCluster, cfg.RedisPassword)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := rdb.Ping(ctx).Err(); err != nil {
		log.Warn("Redis is not reachable yet; calls fail with UNAVAILABLE until it is", "err", err)
	}
	cancel()

	srv, err := server.New(server.Config{Redis: rdb, Secret: []byte(cfg.Secret), AdminToken: cfg.AdminToken, Logger: log,
		Caps: cfg.Caps, Quality: cfg.Quality, Replicas: cfg.Replicas, ReceiptWindow: cfg.ReceiptWindow,
		ApprovalWait: cfg.ApprovalWait, LogKey: cfg.LogKey, WebPush: webPush, FCM: fcm, APNs: apns,
		WakeInterval: cfg.Push.WakeInterval, TLS: publicTLS, AdminTLS: adminTLS, TracerProvider: tp, Limits: cfg.Limits})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	var adminLis net.Listener
	if cfg.AdminListen != "" {
		if adminLis, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			lis.Close()
			return fmt.Errorf("--admin-listen: %w", err)
		}
	}
	served := make(chan error, 2)
	go func() { served <- srv.Serve(lis) }()
	log.Info("heraldd listening", "addr", lis.Addr().String(), "tls", publicTLS != nil, "dev", cfg.Dev, "tracing", tp != nil)
	if adminLis != nil {
		go func() { served <- srv.ServeAdmin(adminLis) }()
		log.Info("admin listener", "addr", adminLis.Addr().String(), "tls", adminTLS != nil)
	}
	if publicTLS == nil && cfg.Insecure {
		log.Warn("serving plaintext (--insecure): tokens cross the network in clear unless it encrypts them")
	}
	if cfg.MetricsListen != "" {
		addr, stop, err := serveMetrics(cfg.MetricsListen, srv.MetricsHandler(), log)
		if err != nil {
			return err
		}
		defer stop(context.Background())
		log.Info("metrics listening", "addr", addr, "path", "/metrics")
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-served:
		return err
	case s := <-sig:
		log.Info("shutting down", "signal", s.String())
	}
	ctx, cancel = context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	srv.Shutdown(ctx)
	log.Info("stopped")
	return nil
}

// connect makes a Redis client with short timeouts: when Redis is down, calls fail
// fast with UNAVAILABLE instead of hanging, and recover by themselves when it returns.
// A password, when given, is used in place of one in the URL.
func connect(url string, cluster bool, password string) (redis.UniversalClient, error) {
	if cluster {
		o, err := redis.ParseClusterURL(url)
		if err != nil {
			return nil, fmt.Errorf("--redis: %w", err)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = time.Second, 2*time.Second, 2*time.Second, 1
		if password != "" {
			o.Password = password
		}
		return redis.NewClusterClient(o), nil
	}
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("--redis: %w", err)
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = time.Second, 2*time.Second, 2*time.Second, 1
	if password != "" {
		o.Password = password
	}
	return redis.NewClient(o), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
