package redistest

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestStartGivesAnEmptyWorkingStore(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := context.Background()
	if n, err := s.Client.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE = %d, %v; want 0, nil", n, err)
	}
	if err := s.Client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Client.Get(ctx, "k").Result(); v != "v" {
		t.Fatalf("GET k = %q, want v", v)
	}
}

// TestDurableKeepsAcknowledgedWrites: a durable server comes back from a crash and
// from a shutdown with every write it acknowledged.
func TestDurableKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	if Memory() {
		t.Skip("the in-process store cannot be restarted")
	}
	for _, tc := range []struct {
		name string
		stop func(*testing.T, *Server)
	}{
		{"crash", func(_ *testing.T, s *Server) { s.Stop() }},
		{"shutdown", func(t *testing.T, s *Server) { s.Shutdown(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := StartDurable(t)
			ctx := context.Background()
			if err := s.Client.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			tc.stop(t, s)
			if err := s.Client.Get(ctx, "k").Err(); err == nil {
				t.Fatal("GET answered while the server was stopped")
			}
			s.Restart(t)
			if v, err := s.Client.Get(ctx, "k").Result(); err != nil || v != "v" {
				t.Fatalf("GET k after restart = %q, %v; want v", v, err)
			}
		})
	}
}

// TestAServerOnATakenPortIsNotTakenForOurs: a redis-server started on a port another
// one already serves is noticed (the one answering is not the one started), rather
// than the test talking to the other test's data.
func TestAServerOnATakenPortIsNotTakenForOurs(t *testing.T) {
	t.Parallel()
	if Memory() {
		t.Skip("starts redis-server processes")
	}
	first := Start(t)
	_, port, _ := strings.Cut(first.Addr, ":")
	second := &Server{Addr: first.Addr, args: []string{"--port", port, "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no"}}
	err := second.start()
	if !errors.Is(err, errNotOurs) {
		t.Fatalf("a second server on %s: %v, want errNotOurs", first.Addr, err)
	}
}
