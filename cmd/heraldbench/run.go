package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// bench is one run: the servers heraldbench started, its connections to them, and the
// people it registered.
type bench struct {
	cfg config
	// say reports progress.
	say func(format string, args ...any)
	// dir holds the servers' files and logs.
	dir string
	// self is heraldbench's own process id.
	self int
	// stops undo what the run started, last first.
	stops []func()

	redisAddr  string
	rdb        *redis.Client
	heraldd    *process
	baseline   *process
	metricsURL string
	adminToken string
	apiKey     string
	// herald are connections to the public listener; fanout more of them, for the
	// broadcast's streams; admin, one to the admin listener; base, to the baseline.
	herald, fanout, base []*grpc.ClientConn
	admin                *grpc.ClientConn

	// sendTo are the recipients of Send, SendBatch and the baselines; steadyTo and
	// broadcastTo the devices of steady delivery and of the broadcast, apart so that
	// nothing queues for them while their streams are closed.
	sendTo, steadyTo, broadcastTo []recipient
}

func (b *bench) heralddServer() server {
	return server{name: "heraldd", pid: b.heraldd.pid(), metrics: b.metricsURL}
}

func (b *bench) baselineServer() server { return server{name: "baseline", pid: b.baseline.pid()} }

// run measures, and stops everything it started before it returns. On failure it
// keeps the servers' logs and says where.
func run(ctx context.Context, cfg config, progress io.Writer) (rep *report, err error) {
	b := &bench{cfg: cfg, self: os.Getpid(),
		say: func(format string, args ...any) { fmt.Fprintf(progress, "heraldbench: "+format+"\n", args...) }}
	if b.dir, err = os.MkdirTemp("", "heraldbench-"); err != nil {
		return nil, err
	}
	defer func() {
		for i := len(b.stops) - 1; i >= 0; i-- {
			b.stops[i]()
		}
		if err != nil && ctx.Err() == nil {
			b.say("the servers' logs are kept in %s", b.dir)
		} else {
			os.RemoveAll(b.dir)
		}
	}()
	rep = &report{Config: reportConfigOf(cfg), CPUs: runtime.NumCPU(), Rounds: map[string][]result{}}
	if rep.Redis, err = b.startRedis(ctx); err != nil {
		return nil, err
	}
	if rep.Heraldd, err = b.startHeraldd(ctx); err != nil {
		return nil, err
	}
	if err := b.startBaseline(ctx); err != nil {
		return nil, err
	}
	b.say("redis-server %s, heraldd %s and the baseline are up; registering %d devices", rep.Redis, rep.Heraldd,
		cfg.recipients+cfg.steadyDevices+cfg.broadcastDevices+cfg.memoryDevices)
	next, err := b.setUp(ctx)
	if err != nil {
		return nil, err
	}
	b.say("measuring Redis memory over %d more devices and two messages to each", cfg.memoryDevices)
	if rep.Memory, err = b.measureMemory(ctx, next, cfg.memoryDevices); err != nil {
		return nil, err
	}
	b.say("memory: %.0f B per device, %.0f B per queued message (%.0f B for the first to a device)",
		rep.Memory.PerDevice, rep.Memory.PerMessage, rep.Memory.PerFirstMessage)
	for round := 1; round <= cfg.rounds; round++ {
		for _, sc := range scenarios {
			res, err := sc.run(b, ctx, round)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round, sc.name, err)
			}
			rep.Rounds[sc.name] = append(rep.Rounds[sc.name], res)
			b.say("round %d/%d %-16s %7.0f msgs/s  p50 %7.2f ms  p99 %7.2f ms  CPU per message: Redis %5.1f µs, server %5.1f µs, heraldbench %5.1f µs",
				round, cfg.rounds, sc.name, res.MsgsPerSec, res.P50Ms, res.P99Ms, res.RedisCPUUs, res.ServerCPUUs, res.ClientCPUUs)
		}
	}
	rep.summarize()
	return rep, nil
}

// startRedis starts a redis-server that keeps nothing on disk, and returns its
// version.
func (b *bench) startRedis(ctx context.Context) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	b.redisAddr = "127.0.0.1:" + strconv.Itoa(port)
	p, err := startProcess("redis-server", filepath.Join(b.dir, "redis.log"), childEnv(), b.cfg.redisServer,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", b.dir, "--save", "", "--appendonly", "no")
	if err != nil {
		return "", err
	}
	b.stops = append(b.stops, p.stop)
	b.rdb = redis.NewClient(&redis.Options{Addr: b.redisAddr, PoolSize: 2 * pipelineCallers})
	b.stops = append(b.stops, func() { b.rdb.Close() })
	if err := p.waitReady(ctx, 10*time.Second, func(ctx context.Context) error { return b.rdb.Ping(ctx).Err() }); err != nil {
		return "", err
	}
	if err := smallScript.Load(ctx, b.rdb).Err(); err != nil {
		return "", fmt.Errorf("load the small script: %w", err)
	}
	text, err := b.rdb.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(text, "\r\n") {
		if v, ok := strings.CutPrefix(line, "redis_version:"); ok {
			return v, nil
		}
	}
	return "", errors.New("redis INFO server has no redis_version")
}

// startHeraldd starts heraldd on Redis as production would run it, with the access log
// at info (to a file) and metrics served, and returns its version.
func (b *bench) startHeraldd(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, b.cfg.heraldd, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", b.cfg.heraldd, err)
	}
	version := strings.TrimPrefix(strings.TrimSpace(string(out)), "heraldd ")
	var addrs [3]string
	for i := range addrs {
		port, err := freePort()
		if err != nil {
			return "", err
		}
		addrs[i] = "127.0.0.1:" + strconv.Itoa(port)
	}
	listen, adminListen, metricsListen := addrs[0], addrs[1], addrs[2]
	b.metricsURL = "http://" + metricsListen + "/metrics"
	b.adminToken = "ha_" + randomHex(16)
	// The secrets go by the environment, as production gives them, not on the
	// command line.
	b.heraldd, err = startProcess("heraldd", filepath.Join(b.dir, "heraldd.log"),
		childEnv("HERALD_SECRET="+randomHex(32), "HERALD_ADMIN_TOKEN="+b.adminToken), b.cfg.heraldd,
		"--listen", listen, "--admin-listen", adminListen, "--metrics-listen", metricsListen,
		"--redis", "redis://"+b.redisAddr, "--log-level", "info", "--pair-interval", "0",
		"--pending-bytes-per-business", "0", "--shutdown-timeout", "5s")
	if err != nil {
		return "", err
	}
	b.stops = append(b.stops, b.heraldd.stop)
	if b.herald, err = b.dial(listen, conns); err != nil {
		return "", err
	}
	if b.fanout, err = b.dial(listen, fanoutConns); err != nil {
		return "", err
	}
	admin, err := b.dial(adminListen, 1)
	if err != nil {
		return "", err
	}
	b.admin = admin[0]
	for _, c := range []*grpc.ClientConn{b.herald[0], b.admin} {
		if err := b.heraldd.waitReady(ctx, 30*time.Second, serving(c)); err != nil {
			return "", err
		}
	}
	return version, nil
}

// startBaseline starts the baseline server: heraldbench's own binary, re-executed.
func (b *bench) startBaseline(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	b.baseline, err = startProcess("baseline", filepath.Join(b.dir, "baseline.log"), childEnv(), exe,
		"baseline", "-listen", addr, "-redis", b.redisAddr)
	if err != nil {
		return err
	}
	b.stops = append(b.stops, b.baseline.stop)
	if b.base, err = b.dial(addr, conns); err != nil {
		return err
	}
	return b.baseline.waitReady(ctx, 10*time.Second, func(ctx context.Context) error {
		return b.base[0].Invoke(ctx, emptyMethod, &heraldv1.SendRequest{}, &heraldv1.SendResponse{})
	})
}

// setUp creates the business and registers the recipients of every scenario; it
// returns the index of the next number free.
func (b *bench) setUp(ctx context.Context) (int, error) {
	if err := b.createBusiness(ctx); err != nil {
		return 0, err
	}
	next := 0
	for _, set := range []struct {
		to *[]recipient
		n  int
	}{{&b.sendTo, b.cfg.recipients}, {&b.steadyTo, b.cfg.steadyDevices}, {&b.broadcastTo, b.cfg.broadcastDevices}} {
		var err error
		if *set.to, err = b.register(ctx, next, set.n); err != nil {
			return 0, err
		}
		next += set.n
	}
	return next, nil
}

// dial makes n connections to addr, closed when the run ends.
func (b *bench) dial(addr string, n int) ([]*grpc.ClientConn, error) {
	out := make([]*grpc.ClientConn, n)
	for i := range out {
		c, err := dial(addr)
		if err != nil {
			return nil, err
		}
		b.stops = append(b.stops, func() { c.Close() })
		out[i] = c
	}
	return out, nil
}

// serving is a readiness check: the gateway's health service says SERVING.
func serving(c *grpc.ClientConn) func(context.Context) error {
	return func(ctx context.Context) error {
		r, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("health: %v", r.GetStatus())
		}
		return nil
	}
}

// randomHex is n random bytes in hex: the gateway's secret and admin token.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
