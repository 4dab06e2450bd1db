// Package redistest gives a test a store of its own to run against: by default a real
// redis-server started on a free loopback port, or, with HERALD_TEST_STORE=memory, the
// in-process store that heraldd's dev mode uses, so one suite tests both.
//
// A missing redis-server fails the test rather than skipping it: the project's test
// command installs it, and a skipped suite would prove nothing.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/memstore"
	"github.com/redis/go-redis/v9"
)

// Server is a store started for one test.
type Server struct {
	// URL is the redis:// URL to give to heraldd or redis.ParseURL.
	URL string
	// Addr is host:port.
	Addr string
	// Client is a client connected to it, closed when the test ends.
	Client *redis.Client

	mu      sync.Mutex
	cmd     *exec.Cmd
	memory  *memstore.Store
	args    []string
	logs    *bytes.Buffer
	stopped bool
}

// Memory reports whether tests run on the in-process store instead of redis-server.
func Memory() bool { return os.Getenv("HERALD_TEST_STORE") == "memory" }

// Start starts a fresh, empty store for t and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, false)
}

// StartDurable is Start with Redis persisting every write before it replies
// (appendfsync always), so data survives Stop and Restart as in production. On the
// in-process store it is Start.
func StartDurable(t testing.TB) *Server {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, durable bool) *Server {
	t.Helper()
	s := &Server{}
	if Memory() {
		m, err := memstore.Start()
		if err != nil {
			t.Fatal(err)
		}
		s.memory, s.URL, s.Addr = m, m.URL(), m.Addr()
		t.Cleanup(m.Close)
	} else {
		// A port found free may be taken before the server binds it (by another
		// test's server, which answers instead): then on another port.
		var dir string
		if durable {
			dir = t.TempDir()
		}
		for try := 1; ; try++ {
			port, err := freePort()
			if err != nil {
				t.Fatal(err)
			}
			s.Addr = "127.0.0.1:" + strconv.Itoa(port)
			s.URL = "redis://" + s.Addr
			s.args = []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
				"--appendonly", "no", "--protected-mode", "no"}
			if durable {
				s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always", "--dir", dir)
			}
			err = s.start()
			if err == nil {
				break
			}
			if !errors.Is(err, errNotOurs) || try == 3 {
				t.Fatal(err)
			}
		}
		t.Cleanup(s.Stop)
	}
	s.Client = redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { s.Client.Close() })
	return s
}

// errNotOurs is a port that another redis-server answers on.
var errNotOurs = errors.New("the port is served by another redis-server than the one started")

func (s *Server) start() error {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server is not installed (run scripts/test, which installs it, or `apt-get install redis-server`): %w", err)
	}
	s.logs = &bytes.Buffer{}
	cmd := exec.Command(path, s.args...)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The server that answers must be the one just started: another test's
		// server may have taken the port while this one was down.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		info, err := c.Info(ctx, "server").Result()
		cancel()
		if err == nil {
			if pid := infoField(info, "process_id"); pid != strconv.Itoa(cmd.Process.Pid) {
				cmd.Process.Kill()
				cmd.Wait()
				return fmt.Errorf("%w: %s is served by process %s; its output: %s", errNotOurs, s.Addr, pid, s.logs)
			}
			return nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("redis-server did not answer on %s: %v; its output: %s", s.Addr, err, s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL), as a crash would. Restart brings it back on the
// same address: empty, or, after StartDurable, with every write it acknowledged.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	if s.memory != nil {
		s.memory.Close()
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// Shutdown stops a real redis-server as an operator does (SIGTERM: it finishes its
// append-only file and exits) and waits for it to exit. Restart brings it back on the
// same address, with its data after StartDurable. On the in-process store it skips the
// test: that store cannot come back on the same address.
func (s *Server) Shutdown(t testing.TB) {
	t.Helper()
	if s.memory != nil {
		t.Skip("the in-process store cannot be restarted on the same address")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("redis-server did not shut down cleanly: %v; its output: %s", err, s.logs)
	}
}

// Pause stalls the server (SIGSTOP) as an overloaded or swapping Redis would: it
// keeps its connections and what clients send it waits, unread, until Resume. On the
// in-process store it skips the test: that store cannot stall.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGSTOP)
}

// Resume lets a paused server go on; it then runs what was sent to it meanwhile.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGCONT)
}

func (s *Server) signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if s.memory != nil {
		t.Skip("the in-process store cannot be stalled")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// Restart starts a stopped real redis-server again on the same address. On the
// in-process store it skips the test: that store cannot come back on the same port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.memory != nil {
		t.Skip("the in-process store cannot be restarted on the same address")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		return
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	s.stopped = false
}

// freePort picks a free loopback port for a server that may be stopped and started
// again on it. It is taken from below the kernel's ephemeral range: a port from that
// range, left free while its server is down, can be handed to any outgoing connection
// meanwhile, even to a client dialling that very port (TCP connects to itself), and the
// server could not come back on it.
func freePort() (int, error) {
	low := ephemeralLow()
	const floor = 10000
	for range 200 {
		if low <= floor+1000 {
			break
		}
		p := floor + rand.IntN(low-floor)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue // taken
		}
		l.Close()
		return p, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreeAddr is a free loopback address for a test's own server process that it may
// stop and start again on the same address (see freePort).
func FreeAddr(t testing.TB) string {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}

// ephemeralLow is the lowest port the kernel hands to outgoing connections (Linux's
// default when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	low, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return low
}

// infoField is field's value in an INFO reply, "" if absent.
func infoField(info, field string) string {
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}
