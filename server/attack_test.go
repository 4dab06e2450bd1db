package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// The tools of the abuse suite (abuse_test.go): a gRPC client that streams requests
// of any size from nothing, and a probe of the test process's heap. The gateway runs
// in the test process, so with a client that holds nothing, what the heap holds above
// its start is the gateway's.

// rawGRPC makes gRPC calls over HTTP/2 with net/http, each request a gRPC message whose
// length prefix says size bytes, of which it sends head and then zeros, made as they
// are sent: the attacker's requests cost the test process a frame buffer, whatever
// their size.
type rawGRPC struct {
	hc   *http.Client
	addr string
}

func newRawGRPC(t *testing.T, addr string) *rawGRPC {
	t.Helper()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10,
		MaxReceiveBufferPerConnection: 64 << 10}}
	t.Cleanup(tr.CloseIdleConnections)
	return &rawGRPC{hc: &http.Client{Transport: tr}, addr: addr}
}

// call sends method a request announced as size bytes (head, then zeros; body, when
// given, is read instead of the zeros), with the bearer token if any, and returns the
// status the gateway answered.
func (r *rawGRPC) call(ctx context.Context, method, token string, head []byte, size int, body io.Reader) *grpcstatus.Status {
	prefix := make([]byte, 5)
	binary.BigEndian.PutUint32(prefix[1:], uint32(size))
	if body == nil {
		body = &zeros{n: size - len(head)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.addr+method,
		io.MultiReader(bytes.NewReader(prefix), bytes.NewReader(head), body))
	if err != nil {
		return grpcstatus.New(codes.Internal, err.Error())
	}
	req.Header.Set("content-type", "application/grpc")
	req.Header.Set("te", "trailers")
	if token != "" {
		req.Header.Set("authorization", "Bearer "+token)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return grpcstatus.New(codes.Unavailable, "transport: "+err.Error())
	}
	defer resp.Body.Close()
	code := resp.Header.Get("grpc-status") // a refusal is trailers only
	msg := resp.Header.Get("grpc-message")
	if code == "" {
		io.Copy(io.Discard, resp.Body)
		code, msg = resp.Trailer.Get("grpc-status"), resp.Trailer.Get("grpc-message")
	}
	n, err := strconv.Atoi(code)
	if err != nil {
		return grpcstatus.New(codes.Unknown, "no grpc-status in the answer")
	}
	return grpcstatus.New(codes.Code(n), msg)
}

// zeros reads n zero bytes.
type zeros struct{ n int }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := min(len(p), z.n)
	clear(p[:k])
	z.n -= k
	return k, nil
}

// heapProbe follows the heap in use of the test process while an attack runs.
type heapProbe struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

// heapInUse is the heap in use after a collection. It collects twice: buffers that
// gRPC keeps in a sync.Pool survive one collection, and would hide what an attack
// takes by being reused for it.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// probeHeap takes the heap in use now as the base, and samples it until grown.
func probeHeap() *heapProbe {
	p := &heapProbe{base: heapInUse(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > p.peak.Load() {
				p.peak.Store(m.HeapInuse)
			}
			select {
			case <-p.stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return p
}

// grown stops the probe and returns how far the heap in use rose above the base at
// its highest (garbage not yet collected included, so it errs high).
func (p *heapProbe) grown() uint64 {
	close(p.stop)
	<-p.done
	if peak := p.peak.Load(); peak > p.base {
		return peak - p.base
	}
	return 0
}

// heldAbove is how far the heap in use after a collection is above base: what is
// held, garbage aside.
func heldAbove(base uint64) uint64 {
	if now := heapInUse(); now > base {
		return now - base
	}
	return 0
}

// concurrently runs f(i) for i in [0, n) at once and waits for all.
func concurrently(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

// tcpConns counts the TCP connections a test opens, so that it can close them.
func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

const mib = 1 << 20
