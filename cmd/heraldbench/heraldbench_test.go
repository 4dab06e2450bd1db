package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/redistest"
)

// TestMain serves the baseline when run does what heraldbench does, re-executing its
// own binary as `… baseline`, which in a test is the test binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "baseline" {
		if err := serveBaseline(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "baseline:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRun runs heraldbench in its smallest mode against a real redis-server and a
// heraldd built from this tree: every scenario runs, every figure the table shows is
// measured, and nothing it started outlives it.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds heraldd and runs every scenario: about 20 s")
	}
	if redistest.Memory() {
		t.Skip("heraldbench measures a redis-server of its own; the in-process store has nothing to measure")
	}
	if runtime.GOOS != "linux" {
		t.Skip("heraldbench reads processes' CPU time from /proc")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is needed (scripts/test installs it): %v", err)
	}
	heraldd := filepath.Join(t.TempDir(), "heraldd")
	if out, err := exec.Command("go", "build", "-o", heraldd, "../heraldd").CombinedOutput(); err != nil {
		t.Fatalf("build heraldd: %v\n%s", err, out)
	}
	cfg, err := parseFlags([]string{"-heraldd", heraldd, "-rounds", "1", "-duration", "200ms", "-recipients", "8",
		"-memory-devices", "8", "-steady-devices", "4", "-steady-rate", "200", "-broadcast-devices", "8",
		"-broadcast-rate", "1000"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	rep, err := run(context.Background(), cfg, &progress)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	if kids := children(t, os.Getpid()); len(kids) > 0 {
		t.Errorf("processes run started are still running: %v", kids)
	}

	ofHeraldd := map[string]bool{"send": true, "send_batch": true, "steady_delivery": true, "broadcast": true}
	for _, sc := range scenarios {
		if n := len(rep.Rounds[sc.name]); n != 1 {
			t.Errorf("%s: %d results, want one a round", sc.name, n)
		}
		m := rep.Median[sc.name]
		for _, f := range []struct {
			name string
			v    float64
		}{{"messages", float64(m.Messages)}, {"msgs/s", m.MsgsPerSec}, {"p50", m.P50Ms}, {"p99", m.P99Ms},
			{"Redis CPU", m.RedisCPUUs}, {"server CPU", m.ServerCPUUs}} {
			if !(f.v > 0) {
				t.Errorf("%s: %s is %v", sc.name, f.name, f.v)
			}
		}
		if ofHeraldd[sc.name] && !(m.RoundTrips > 0) {
			t.Errorf("%s: no Redis round trips counted", sc.name)
		}
	}
	for _, name := range []string{"steady_delivery", "broadcast"} {
		m := rep.Median[name]
		if m.Undelivered != 0 || !(m.DeliveryP50Ms > 0) || !(m.DeliveryP99Ms >= m.DeliveryP50Ms) {
			t.Errorf("%s: undelivered %d, delivery p50 %v ms, p99 %v ms", name, m.Undelivered, m.DeliveryP50Ms, m.DeliveryP99Ms)
		}
	}
	if m := rep.Median["steady_delivery"]; !(m.AdmissionRoundTrips > 0) || !(m.AdmissionServerCPUUs > 0) {
		t.Errorf("steady delivery: no admission cost to net out: %+v", m)
	}
	mem := rep.Memory
	if mem.PerDevice == 0 || mem.PerMessage == 0 || mem.PerFirstMessage == 0 {
		t.Errorf("memory not measured: %+v", mem)
	}
	if !strings.Contains(kindsLine(mem.KeyKinds), ":dev`") {
		t.Errorf("no device records among the key kinds: %s", kindsLine(mem.KeyKinds))
	}
	if len(rep.Goals) != len(goals) {
		t.Errorf("%d goals checked, want %d", len(rep.Goals), len(goals))
	}

	var table bytes.Buffer
	rep.writeTable(&table)
	rows := 0
	for _, line := range strings.Split(table.String(), "\n") {
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| figure ") {
			continue
		}
		rows++
		cells := strings.Split(line, " | ")
		if len(cells) != 5 || strings.TrimSpace(cells[1]) == "" || strings.Contains(line, "NaN") {
			t.Errorf("row without its figure: %s", line)
		}
	}
	if rows < 15 {
		t.Errorf("%d rows in the table:\n%s", rows, table.String())
	}
}

// children are the processes whose parent is pid.
func children(t *testing.T, pid int) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, string(b[:i+1]))
		}
	}
	return out
}
