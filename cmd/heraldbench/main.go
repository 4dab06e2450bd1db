// Command heraldbench measures a Herald gateway from the outside, against floors served
// by the same gRPC stack, and prints one table of the figures Herald's performance
// goals are stated in (report.go lists them), each with its goal met or not.
//
// It starts what it measures: a redis-server of its own (no snapshots, no AOF: it
// measures the gateway, not the disk), the heraldd binary it is given, against it, in
// a production-like setting (access log at info, metrics served), and a baseline
// server, heraldbench itself re-executed as `heraldbench baseline`, a grpc-go server
// whose Empty method answers at once and whose Script method runs one small EVALSHA
// (a block check, a consent check and an XADD). It sets the gateway up through its
// public and admin APIs (a business, an API key, recipients registering one device
// each) and then runs, in interleaved rounds: the two unary baselines and Herald's
// Send, 64 callers over 4 connections; SendBatch against the small script pipelined
// sixteen to a round trip; steady delivery to devices that ack each delivery; and a
// live broadcast to 1,000 connected devices, which ack only after it is measured.
// Beforehand it measures Redis's memory per registered device and per queued message.
// Every figure is the median over rounds; CPU per message comes from Redis's INFO and
// from /proc (so it runs on Linux).
//
// scripts/bench builds heraldd and heraldbench and runs it:
//
//	scripts/bench            # about 5 minutes
//	scripts/bench -quick     # about 1 minute
//	scripts/bench -json      # the same figures, per round too, as JSON
//
// It stops everything it started when it ends, also on Ctrl-C.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// config is what one run measures, and how long it takes.
type config struct {
	// heraldd and redisServer are the binaries to run.
	heraldd, redisServer string
	// rounds is how many times every scenario runs, interleaved with the others.
	rounds int
	// duration is how long a scenario is measured in each round.
	duration time.Duration
	// recipients are the one-device recipients Send, SendBatch and the baselines go to.
	recipients int
	// memoryDevices are the devices registered, and messages queued to them, to
	// measure Redis's memory per device and per message.
	memoryDevices int
	// steadyDevices receive at steadyRate messages a second in all during steady
	// delivery.
	steadyDevices int
	steadyRate    float64
	// broadcastDevices receive at broadcastRate messages a second in all during the
	// live broadcast.
	broadcastDevices int
	broadcastRate    float64
	// json prints JSON instead of the table.
	json bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "baseline" {
		if err := serveBaseline(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "heraldbench baseline:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "heraldbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := run(ctx, cfg, os.Stderr)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case interrupted:
		fmt.Fprintln(os.Stderr, "heraldbench: interrupted; everything it started is stopped")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "heraldbench:", err)
		os.Exit(1)
	case cfg.json:
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(os.Stderr, "heraldbench:", err)
			os.Exit(1)
		}
	default:
		rep.writeTable(os.Stdout)
	}
}

// parseFlags reads heraldbench's flags; usage goes to out.
func parseFlags(args []string, out io.Writer) (config, error) {
	fs := flag.NewFlagSet("heraldbench", flag.ContinueOnError)
	fs.SetOutput(out)
	var cfg config
	fs.StringVar(&cfg.heraldd, "heraldd", "heraldd", "the heraldd binary to measure")
	fs.StringVar(&cfg.redisServer, "redis-server", "redis-server", "the redis-server binary to run")
	quick := fs.Bool("quick", false, "about a minute: 2 rounds of 2s, 1000 recipients and 1000 memory devices (flags given win)")
	fs.IntVar(&cfg.rounds, "rounds", 3, "rounds; every scenario runs once a round, and each figure is the median over rounds")
	fs.DurationVar(&cfg.duration, "duration", 8*time.Second, "how long each scenario is measured in each round")
	fs.IntVar(&cfg.recipients, "recipients", 2000, "one-device recipients that Send, SendBatch and the baselines go to, round-robin")
	fs.IntVar(&cfg.memoryDevices, "memory-devices", 2000, "devices registered, and messages queued to them, to measure Redis memory per device and per message")
	fs.IntVar(&cfg.steadyDevices, "steady-devices", 200, "devices with a stream open during steady delivery")
	fs.Float64Var(&cfg.steadyRate, "steady-rate", 1000, "messages a second sent to them, in all")
	fs.IntVar(&cfg.broadcastDevices, "broadcast-devices", 1000, "devices with a stream open during the live broadcast")
	fs.Float64Var(&cfg.broadcastRate, "broadcast-rate", 5000, "messages a second sent to them with SendBatch, in all")
	fs.BoolVar(&cfg.json, "json", false, "print the figures, per round and their medians, as JSON instead of the table")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: heraldbench [flags]\n\nMeasures heraldd against a one-EVALSHA gRPC baseline and prints one table (see scripts/bench).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *quick {
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for name, v := range map[string]string{"rounds": "2", "duration": "2s", "recipients": "1000", "memory-devices": "1000"} {
			if !given[name] {
				_ = fs.Set(name, v)
			}
		}
	}
	switch {
	case cfg.rounds < 1:
		return config{}, errors.New("-rounds must be at least 1")
	case cfg.duration < 100*time.Millisecond:
		return config{}, errors.New("-duration must be at least 100ms")
	case cfg.recipients < 1 || cfg.memoryDevices < 1 || cfg.steadyDevices < 1 || cfg.broadcastDevices < 1:
		return config{}, errors.New("every count of recipients and devices must be at least 1")
	case cfg.recipients+cfg.memoryDevices+cfg.steadyDevices+cfg.broadcastDevices > maxRecipients:
		return config{}, fmt.Errorf("at most %d recipients and devices in all", maxRecipients)
	case cfg.steadyRate <= 0 || cfg.broadcastRate <= 0:
		return config{}, errors.New("rates must be positive")
	}
	return cfg, nil
}
