// Package egress is how the gateway calls URLs that its callers chose: a business's
// webhook, a device's Web Push endpoint. Such a URL must not turn the gateway against
// the operator's own network, so a connection is allowed only to a public address,
// checked on the address actually dialled (after resolution, so DNS cannot dodge
// it), and redirects are not followed (the URL registered is the one called).
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrNotPublic is a dialled address that is not public.
var ErrNotPublic = errors.New("egress: the address is not public")

// sharedSpace is carrier-grade NAT's shared address space (RFC 6598), which some
// clouds use for their own services (metadata endpoints among them).
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// Public reports whether ip is an address a caller-chosen URL may reach: not loopback,
// private, link-local, shared (RFC 6598), unspecified or multicast.
func Public(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	a = a.Unmap()
	return !(a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast() || sharedSpace.Contains(a))
}

// Control is a net.Dialer Control that refuses every address that is not Public.
func Control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !Public(ip) {
		return fmt.Errorf("%w: %s", ErrNotPublic, host)
	}
	return nil
}

// Client returns an HTTP client for caller-chosen URLs: connections only to public
// addresses (unless allowPrivate, for tests on loopback), no redirects, and the
// given timeout for a response's headers.
func Client(allowPrivate bool, headerTimeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	if !allowPrivate {
		dialer.Control = Control
	}
	return &http.Client{
		Transport: &http.Transport{DialContext: dialer.DialContext, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 2,
			TLSHandshakeTimeout: 5 * time.Second, ResponseHeaderTimeout: headerTimeout},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
