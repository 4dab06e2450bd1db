package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/vanguard/vanguardgrpc"
	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The public listener speaks native gRPC and, for browsers, curl and any HTTP client,
// the same services over the Connect protocol, gRPC-Web and JSON. Each connection is
// given to one of two servers: native gRPC clients to the gRPC server, with its own
// transport and flow control — over TLS those that offer only h2 by ALPN (as every
// gRPC client does), in plaintext those that speak HTTP/2 with prior knowledge; every
// other connection (HTTP/1, or HTTP/2 negotiated by a client that also offered
// HTTP/1.1, as browsers and curl do) goes to an HTTP server whose handler is connectrpc.com/vanguard's
// transcoder in front of the same gRPC server, so every call runs the same
// interceptors (auth, validation, logs) whichever protocol it came in. One connection
// carries one kind of client: a gRPC client sends only gRPC, a browser never does.
//
// Vanguard is used rather than a Connect rewrite of the services because the services
// stay grpc-go's, one implementation, and vanguard is the Connect project's own
// transcoder for exactly that.

// sniffTimeout bounds how long a connection may take to say what it is.
const sniffTimeout = 10 * time.Second

// sniffLimit bounds how much of a connection is read to find its first request's
// content type.
const sniffLimit = 64 << 10

var h2Preface = []byte(http2.ClientPreface)

// newHTTPServer is the HTTP side of the public listener.
func (s *Server) newHTTPServer() (*http.Server, error) {
	tc, err := vanguardgrpc.NewTranscoder(s.grpc)
	if err != nil {
		return nil, fmt.Errorf("server: HTTP transcoder: %w", err)
	}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true) // TLS, if any, was ended by route
	return &http.Server{Handler: s.guardHTTP(tc), Protocols: p, ReadHeaderTimeout: sniffTimeout,
		MaxHeaderBytes: 64 << 10, IdleTimeout: 5 * time.Minute,
		ErrorLog: nil}, nil
}

// guardHTTP refuses before any of a request is read what the gRPC side refuses
// before reading (tap.go, decode.go): a call without valid credentials (checked as
// the interceptors check them, from the cache) and a body over its method's limit
// (with room for JSON's larger spelling). Vanguard reads and transcodes a body before
// the gRPC server sees the call, so this is where an HTTP call is stopped. It also
// takes a plain JSON or proto POST to /<service>/<method> (curl -H 'Content-Type:
// application/json') as the Connect protocol's unary call it is, which vanguard knows
// by the Connect-Protocol-Version header that such a client does not send.
func (s *Server) guardHTTP(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.URL.Path
		if strings.HasPrefix(method, adminPrefix) {
			// The operator's service is not on this listener, and a token offered for
			// it here is not even looked at: the public side tells nothing of the
			// admin side's credentials (as tapFor does for gRPC).
			http.NotFound(w, r)
			return
		}
		if credentialOf(method) != credNone {
			md := metadata.MD{"authorization": r.Header.Values("Authorization")}
			ctx := metadata.NewIncomingContext(r.Context(), md)
			if _, err := s.authenticate(ctx, method); err != nil {
				writeConnectError(w, err)
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, int64(2*s.requestLimit(method)+4096))
		if r.Method == http.MethodPost && r.Header.Get("Connect-Protocol-Version") == "" {
			switch ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) {
			case "application/json", "application/proto":
				r.Header.Set("Connect-Protocol-Version", "1")
			}
		}
		h.ServeHTTP(w, r)
	})
}

// writeConnectError answers err as the Connect protocol does: its HTTP status and a
// JSON body with the code and message. (gRPC-Web clients read the HTTP status.)
func writeConnectError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	httpCode, name := http.StatusInternalServerError, "internal"
	switch st.Code() {
	case codes.Unauthenticated:
		httpCode, name = http.StatusUnauthorized, "unauthenticated"
	case codes.PermissionDenied:
		httpCode, name = http.StatusForbidden, "permission_denied"
	case codes.Unavailable:
		httpCode, name = http.StatusServiceUnavailable, "unavailable"
	case codes.ResourceExhausted:
		httpCode, name = http.StatusTooManyRequests, "resource_exhausted"
	}
	body, _ := json.Marshal(map[string]string{"code": name, "message": st.Message()})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpCode)
	w.Write(body)
}

// Serve serves the public API on lis until Shutdown: native gRPC, and the Connect
// protocol, gRPC-Web and JSON over HTTP (see newHTTPServer), keeping at most
// Limits.MaxConnections connections open. With Config.TLS the connections are TLS,
// with HTTP/2 and HTTP/1.1 offered by ALPN.
func (s *Server) Serve(lis net.Listener) error {
	// At most Limits.MaxConnections connections are open at once (limits.go).
	lis = &limitListener{Listener: lis, open: &s.openConns, max: int64(s.limits.MaxConnections),
		refused: (&connLog{s: s}).refused}
	grpcL, httpL := newConnListener(lis.Addr()), newConnListener(lis.Addr())
	s.mu.Lock()
	s.listeners = append(s.listeners, lis, grpcL, httpL)
	s.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.grpc.Serve(grpcL) })
	wg.Go(func() { s.http.Serve(httpL) })
	defer grpcL.Close()
	defer httpL.Close()
	for {
		conn, err := lis.Accept()
		if err != nil {
			if s.closing() {
				return nil
			}
			return err
		}
		go s.route(conn, grpcL, httpL)
	}
}

// route ends a connection's TLS, if any, looks at its first request, and hands it to
// the gRPC or the HTTP server.
func (s *Server) route(conn net.Conn, grpcL, httpL *connListener) {
	conn.SetDeadline(time.Now().Add(sniffTimeout))
	br := bufio.NewReaderSize(conn, sniffLimit)
	var native bool
	if s.cfg.TLS != nil {
		// Over TLS a gRPC client offers only h2 by ALPN, and then waits for the
		// server's SETTINGS before its first request: it is told apart by its offer.
		// A client that offers HTTP/1.1 too (a browser, curl) is an HTTP client.
		var offers []string
		cfg := withALPN(s.cfg.TLS)
		get := cfg.GetConfigForClient
		cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			offers = h.SupportedProtos
			if get != nil {
				return get(h)
			}
			return nil, nil
		}
		tc := tls.Server(conn, cfg)
		if err := tc.HandshakeContext(context.Background()); err != nil {
			conn.Close()
			return
		}
		conn, br = tc, bufio.NewReaderSize(tc, sniffLimit)
		native = tc.ConnectionState().NegotiatedProtocol == "h2" && !slices.Contains(offers, "http/1.1")
	} else {
		native = isNativeGRPC(br)
	}
	conn.SetDeadline(time.Time{})
	c := &peekedConn{Conn: conn, r: br}
	if native {
		grpcL.push(c)
	} else {
		httpL.push(c)
	}
}

// withALPN is c offering HTTP/2 and HTTP/1.1, keeping its certificate reloading
// (GetConfigForClient).
func withALPN(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.NextProtos = []string{"h2", "http/1.1"}
	if get := c.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			cc, err := get(h)
			if err != nil || cc == nil {
				return cc, err
			}
			cc = cc.Clone()
			cc.NextProtos = []string{"h2", "http/1.1"}
			return cc, nil
		}
	}
	return c
}

// isNativeGRPC reads (without consuming) the start of a plaintext connection: HTTP/2
// with prior knowledge, as gRPC clients speak it, is taken as gRPC. (The first request's
// content type cannot be waited for: a gRPC client may wait for the server's SETTINGS
// before it sends one.) HTTP/1 is an HTTP client: curl, or a browser's Connect or
// gRPC-Web call behind a proxy that ends TLS.
func isNativeGRPC(br *bufio.Reader) bool {
	head, err := br.Peek(len(h2Preface))
	return err == nil && bytes.Equal(head, h2Preface)
}

// peekedConn is a connection whose first bytes were read into r, and are read again
// from there.
type peekedConn struct {
	net.Conn
	r io.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connListener is a net.Listener fed by route.
type connListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
