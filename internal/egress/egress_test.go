package egress

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestPublic: the addresses a caller-chosen URL must not reach, IPv4 and IPv6, and a
// few it may.
func TestPublic(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ip     string
		public bool
	}{
		{"127.0.0.1", false}, {"::1", false}, {"10.1.2.3", false}, {"172.16.0.1", false}, {"192.168.1.1", false},
		{"169.254.169.254", false}, {"100.100.100.200", false}, {"100.64.0.1", false}, {"0.0.0.0", false},
		{"::", false}, {"fe80::1", false}, {"fc00::1", false}, {"224.0.0.1", false}, {"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"8.8.8.8", true}, {"100.128.0.1", true}, {"2606:4700::1111", true},
	} {
		if got := Public(net.ParseIP(tc.ip)); got != tc.public {
			t.Errorf("Public(%s) = %v, want %v", tc.ip, got, tc.public)
		}
	}
}

// TestClientRefusesLoopbackAndRedirects: the client does not connect to a loopback
// server, and one allowed private addresses still does not follow a redirect.
func TestClientRefusesLoopbackAndRedirects(t *testing.T) {
	t.Parallel()
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if r.URL.Path == "/away" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}
	}))
	defer srv.Close()
	_, err := Client(false, time.Second).Get(srv.URL + "/x")
	if !errors.Is(err, ErrNotPublic) {
		t.Fatalf("a loopback URL: %v, want ErrNotPublic", err)
	}
	if calls != 0 {
		t.Fatalf("the loopback server was called %d times", calls)
	}
	resp, err := Client(true, time.Second).Get(srv.URL + "/away")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || calls != 1 {
		t.Fatalf("a redirect: status %d after %d calls, want 302 after 1 (not followed)", resp.StatusCode, calls)
	}
}
