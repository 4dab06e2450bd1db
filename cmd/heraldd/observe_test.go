package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/redistest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// jsonLines parses every line of out as a JSON object, failing the test on one that
// is not.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

// TestHeralddObservability runs heraldd with --log-format json and --metrics-listen:
// every line it writes is a JSON object, an RPC writes its access line at info and a
// failed login one at warn, and /metrics on the metrics listener counts both calls.
func TestHeralddObservability(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	bin := filepath.Join(t.TempDir(), "heraldd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build heraldd: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	adminAddr, adminConn := reserve(t)
	cmd := exec.Command(bin, "--listen", addr, "--admin-listen", adminAddr, "--redis", rs.URL, "--log-format", "json",
		"--metrics-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "HERALD_SECRET="+replicaSecret, "HERALD_ADMIN_TOKEN="+replicaAdmin, "HERALD_LOG_LEVEL=info")
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})

	// The metrics address is in the log, which is how an operator who asked for
	// port 0 finds it.
	var metricsAddr string
	for deadline := time.Now().Add(20 * time.Second); metricsAddr == ""; {
		for _, l := range jsonLines(t, completeLines(stderr.String())) {
			if l["msg"] == "metrics listening" {
				metricsAddr, _ = l["addr"].(string)
			}
		}
		select {
		case <-exited:
			t.Fatalf("heraldd exited: %v\n%s", cmd.ProcessState, stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no \"metrics listening\" line within 20s:\n%s", stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}

	admin := heraldv1.NewAdminServiceClient(adminConn)
	ctx, cancel := context.WithTimeout(bearer(replicaAdmin), 10*time.Second)
	defer cancel()
	if _, err := admin.GetBusiness(ctx, &heraldv1.GetBusinessRequest{BusinessId: "biz_none"}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetBusiness: %v, want NOT_FOUND", err)
	}
	const stolen = "stolen-looking-admin-token-0123456789"
	if _, err := admin.GetBusiness(bearer(stolen), &heraldv1.GetBusinessRequest{BusinessId: "biz_none"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("GetBusiness with a bad token: %v, want UNAUTHENTICATED", err)
	}

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	for _, want := range []string{
		`herald_rpc_requests_total{code="NotFound",method="herald.v1.AdminService/GetBusiness"} 1` + "\n",
		`herald_rpc_requests_total{code="Unauthenticated",method="herald.v1.AdminService/GetBusiness"} 1` + "\n",
		"\nprocess_resident_memory_bytes ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// The access lines are written as the calls end, before their answers go out; what
	// the process wrote reaches the buffer through a pipe, a moment later.
	var found, failed bool
	for deadline := time.Now().Add(10 * time.Second); !(found && failed) && time.Now().Before(deadline); {
		for _, l := range jsonLines(t, completeLines(stderr.String())) {
			if l["method"] != "/herald.v1.AdminService/GetBusiness" {
				continue
			}
			switch {
			case l["level"] == "INFO" && l["msg"] == "rpc" && l["code"] == "NotFound":
				found = true
			case l["level"] == "WARN" && l["msg"] == "login failed" && l["credential"] == "admin_token":
				failed = true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !found || !failed {
		t.Fatalf("access lines found: %v, failed login: %v; log:\n%s", found, failed, stderr)
	}
	if out := stderr.String(); strings.Contains(out, replicaAdmin) || strings.Contains(out, stolen) || strings.Contains(out, replicaSecret) {
		t.Fatalf("the log holds a secret:\n%s", out)
	}
}

// completeLines is out up to its last newline: a line being written is not parsed.
func completeLines(out string) string {
	return out[:strings.LastIndexByte(out, '\n')+1]
}

// TestRedisLoggerGoesThroughSlog: go-redis's printf lines become slog records at warn.
func TestRedisLoggerGoesThroughSlog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := newLogger(&buf, "json", slog.LevelInfo).With("component", "go-redis")
	redisLogger{log: log}.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v\n", 5, "refused")
	lines := jsonLines(t, buf.String())
	if len(lines) != 1 || lines[0]["level"] != "WARN" || lines[0]["component"] != "go-redis" ||
		lines[0]["msg"] != "redis: connection pool: failed to dial after 5 attempts: refused" {
		t.Fatalf("logged %v", lines)
	}
	buf.Reset()
	quiet := newLogger(&buf, "text", slog.LevelError)
	redisLogger{log: quiet}.Printf(context.Background(), "redis: %s", "reconnecting")
	if buf.Len() != 0 {
		t.Fatalf("at error level, logged %q", buf.String())
	}
}

// TestTracerProviderFromTheEnvironment: tracing is on exactly when the standard OTLP
// environment names an endpoint and does not turn the SDK off.
func TestTracerProviderFromTheEnvironment(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env     map[string]string
		on      bool
		wantErr string
	}{
		{env: nil},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
			wantErr: "http/json"},
	} {
		t.Run(fmt.Sprint(c.env), func(t *testing.T) {
			tp, stop, err := tracerProvider(context.Background(), func(k string) string { return c.env[k] })
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (tp != nil) != c.on {
				t.Fatalf("tracing on = %v, want %v", tp != nil, c.on)
			}
			if stop != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				stop(ctx)
			}
		})
	}
}
