package client_test

// The tests run the SDK against the real gateway (package server) on a real store
// (internal/redistest), over real gRPC on loopback.

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/keys"
	phonenumber "github.com/heraldhq/herald/internal/phone"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/keylog"
	"github.com/heraldhq/herald/server"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) {
	// The gateway's Redis client reports every failed dial; the tests that stop the
	// store cause them on purpose.
	redis.SetLogger(quietRedis{})
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

const adminToken = "admin-token-0123456789"

// gatewaySecret keys the test gateways' phone-number HMAC.
const gatewaySecret = "0123456789abcdef0123"

// gateway is a Herald server for one test.
type gateway struct {
	t     testing.TB
	rs    *redistest.Server
	addr  string // the public listener's
	srv   *server.Server
	rdb   *redis.Client
	conn  *grpc.ClientConn
	admin heraldv1.AdminServiceClient // on the admin listener, adminAddr

	adminAddr string
	adminConn *grpc.ClientConn

	mu    sync.Mutex
	first map[string]*client.Device // each number's first device, which approves the others
	noLog bool                      // serve without a key log (at the next serve)
}

func startGateway(t testing.TB) *gateway {
	t.Helper()
	g := &gateway{t: t, rs: redistest.Start(t), first: map[string]*client.Device{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr, g.adminAddr = lis.Addr().String(), adminLis.Addr().String()
	g.serve(lis, adminLis)
	g.conn, err = grpc.NewClient(g.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	g.adminConn, err = grpc.NewClient(g.adminAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	g.admin = heraldv1.NewAdminServiceClient(g.adminConn)
	t.Cleanup(func() {
		g.conn.Close()
		g.adminConn.Close()
		g.stop()
	})
	return g
}

// serve serves a new server on the public and the admin listener; a nil adminLis
// serves no admin listener.
func (g *gateway) serve(lis, adminLis net.Listener) {
	g.t.Helper()
	g.rdb = redis.NewClient(&redis.Options{Addr: g.rs.Addr})
	srv, err := server.New(server.Config{Redis: g.rdb, Secret: []byte(gatewaySecret), AdminToken: adminToken,
		Logger: slog.New(slog.DiscardHandler), LogKey: g.logKey()})
	if err != nil {
		g.t.Fatal(err)
	}
	g.srv = srv
	go srv.Serve(lis)
	if adminLis != nil {
		go srv.ServeAdmin(adminLis)
	}
}

// logKey is the key log's signing key: testLogKey, unless the test runs a gateway
// without a log (noLog).
func (g *gateway) logKey() string {
	if g.noLog {
		return ""
	}
	return testLogKey
}

// testLogKey and testLogPublicKey are the test gateways' key log keys.
var testLogKey, testLogPublicKey = func() (string, string) {
	s, v, err := keylog.GenerateKey("herald-test-log")
	if err != nil {
		panic(err)
	}
	return s, v
}()

func (g *gateway) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.srv.Shutdown(ctx)
	g.rdb.Close()
}

// restart stops the gateway, which ends every open stream, and starts a new one on
// the same address and store, as a deploy does.
func (g *gateway) restart() {
	g.t.Helper()
	g.stop()
	g.serve(g.listenAgain(g.addr), g.listenAgain(g.adminAddr))
}

// listenAgain listens on an address a stopped server just let go of.
func (g *gateway) listenAgain(addr string) net.Listener {
	g.t.Helper()
	var lis net.Listener
	var err error
	for range 50 {
		if lis, err = net.Listen("tcp", addr); err == nil {
			return lis
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.t.Fatal(err)
	return nil
}

func (g *gateway) adminCtx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+adminToken)
}

// limits are a business's limits for newBusiness.
type limits struct {
	perSecond float64
	burst     uint32
}

// high are limits that never bind.
var high = limits{1e6, 1e6}

// newBusiness creates a business with lim and returns its id and an API key.
func (g *gateway) newBusiness(lim limits) (id, apiKey string) {
	g.t.Helper()
	b, err := g.admin.CreateBusiness(g.adminCtx(), &heraldv1.CreateBusinessRequest{DisplayName: "Acme"})
	if err != nil {
		g.t.Fatal(err)
	}
	if _, err := g.admin.SetBusinessLimits(g.adminCtx(), &heraldv1.SetBusinessLimitsRequest{BusinessId: b.BusinessId,
		MessagesPerSecond: lim.perSecond, Burst: lim.burst, UnlimitedUniqueRecipients: true}); err != nil {
		g.t.Fatal(err)
	}
	k, err := g.admin.IssueApiKey(g.adminCtx(), &heraldv1.IssueApiKeyRequest{BusinessId: b.BusinessId})
	if err != nil {
		g.t.Fatal(err)
	}
	return b.BusinessId, k.ApiKey
}

// business creates a business with lim, a signing key registered for it, and a
// Business over conn (g.conn when nil).
func (g *gateway) business(conn grpc.ClientConnInterface, lim limits, opts ...client.BusinessOption) *client.Business {
	g.t.Helper()
	id, key := g.newBusiness(lim)
	signer, err := e2e.GenerateSigningKey()
	if err != nil {
		g.t.Fatal(err)
	}
	if conn == nil {
		conn = g.conn
	}
	b := client.NewBusiness(conn, id, key, signer, opts...)
	if err := b.RegisterSigningKey(g.t.Context()); err != nil {
		g.t.Fatal(err)
	}
	return b
}

// replaceSigningKey puts key in place of the business's signing keys, as the operator
// does for a business that lost them.
func (g *gateway) replaceSigningKey(biz string, key *e2e.SigningKey) {
	g.t.Helper()
	if _, err := g.admin.ReplaceSigningKey(g.adminCtx(), &heraldv1.ReplaceSigningKeyRequest{BusinessId: biz,
		PublicKey: key.PublicKey()}); err != nil {
		g.t.Fatal(err)
	}
}

// device registers a device for number with a fresh verification code.
func (g *gateway) device(conn grpc.ClientConnInterface, number string, alg e2e.Algorithm, opts ...client.DeviceOption) *client.Device {
	g.t.Helper()
	code, err := g.admin.IssueVerificationCode(g.adminCtx(), &heraldv1.IssueVerificationCodeRequest{PhoneNumber: number})
	if err != nil {
		g.t.Fatal(err)
	}
	if conn == nil {
		conn = g.conn
	}
	d, err := client.Register(g.t.Context(), conn, number, code.Code, alg, opts...)
	if err != nil {
		g.t.Fatal(err)
	}
	// As if the number's verification window had passed: tests register more devices
	// to one number than it may be issued codes for in one (delivery.CodeIssues).
	e164, err := phonenumber.Parse(number)
	if err != nil {
		g.t.Fatal(err)
	}
	if err := g.rdb.Del(g.t.Context(), keys.Recipient(keys.UID([]byte(gatewaySecret), e164)).VerifyCounts()).Err(); err != nil {
		g.t.Fatal(err)
	}
	// The number's first device approves its later ones, as the person would.
	g.mu.Lock()
	first, ok := g.first[number]
	if !ok {
		g.first[number] = d
	}
	g.mu.Unlock()
	if pending, _ := d.Pending(); pending != ok {
		g.t.Fatalf("device %s of %s: pending = %v", d.ID(), number, pending)
	} else if pending {
		if err := first.ApproveDevice(g.t.Context(), d.ID(), d.KeyID()); err != nil {
			g.t.Fatal(err)
		}
	}
	return d
}

// received is one item of a Receive sequence.
type received struct {
	msg *client.Message
	err error
}

// receive takes n items from d.Receive, failing the test if they do not come within
// a few seconds.
func receive(t testing.TB, d *client.Device, n int) []received {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got []received
	for m, err := range d.Receive(ctx) {
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("received %d of %d items before the timeout: %v", len(got), n, got)
		}
		got = append(got, received{m, err})
		if len(got) == n {
			break
		}
	}
	return got
}

// receiveMessages takes n messages from d.Receive, failing on any error.
func receiveMessages(t testing.TB, d *client.Device, n int) []*client.Message {
	t.Helper()
	var ms []*client.Message
	for _, r := range receive(t, d, n) {
		if r.err != nil {
			t.Fatalf("receive: %v", r.err)
		}
		ms = append(ms, r.msg)
	}
	return ms
}

// quiet asserts that d receives nothing within a short while.
func quiet(t testing.TB, d *client.Device) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	for m, err := range d.Receive(ctx) {
		// The gateway may see the deadline pass a moment before this process does.
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		t.Fatalf("received %v, %v; want nothing", m, err)
	}
}

// tap is a connection that records every call made through it (for a stream, its
// opening) and every delivery streamed through it, so that tests can see what the SDK sent and when.
type tap struct {
	cc grpc.ClientConnInterface

	mu         sync.Mutex
	calls      []call
	deliveries []*heraldv1.Delivery
}

type call struct {
	method     string
	start, end time.Time
	req, resp  proto.Message
	err        error
}

func newTap(cc grpc.ClientConnInterface) *tap { return &tap{cc: cc} }

func (t *tap) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	start := time.Now()
	err := t.cc.Invoke(ctx, method, args, reply, opts...)
	c := call{method: method, start: start, end: time.Now(), req: proto.Clone(args.(proto.Message)), err: err}
	if err == nil {
		c.resp = proto.Clone(reply.(proto.Message))
	}
	t.mu.Lock()
	t.calls = append(t.calls, c)
	t.mu.Unlock()
	return err
}

func (t *tap) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	start := time.Now()
	s, err := t.cc.NewStream(ctx, desc, method, opts...)
	t.mu.Lock()
	t.calls = append(t.calls, call{method: method, start: start, end: time.Now(), err: err})
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &tapStream{ClientStream: s, t: t}, nil
}

type tapStream struct {
	grpc.ClientStream
	t *tap
}

func (s *tapStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if r, ok := m.(*heraldv1.ReceiveResponse); ok && err == nil && r.GetDelivery() != nil {
		s.t.mu.Lock()
		s.t.deliveries = append(s.t.deliveries, proto.Clone(r.GetDelivery()).(*heraldv1.Delivery))
		s.t.mu.Unlock()
	}
	return err
}

// callsOf returns the recorded calls of a method, e.g.
// heraldv1.MessagingService_Send_FullMethodName.
func (t *tap) callsOf(method string) []call {
	t.mu.Lock()
	defer t.mu.Unlock()
	var cs []call
	for _, c := range t.calls {
		if c.method == method {
			cs = append(cs, c)
		}
	}
	return cs
}

// delivered returns the deliveries streamed so far.
func (t *tap) delivered() []*heraldv1.Delivery {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*heraldv1.Delivery(nil), t.deliveries...)
}
