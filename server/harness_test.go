package server

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/phone"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const testAdminToken = "test-admin-token-0123456789"

// gateway is a real Herald server on a real loopback socket, on a real store.
type gateway struct {
	t         testing.TB
	addr      string // where it listens
	redis     *redistest.Server
	rdb       *redis.Client
	srv       *Server
	conn      *grpc.ClientConn // to the public listener
	adminConn *grpc.ClientConn // to the admin listener
	admin     heraldv1.AdminServiceClient
	messaging heraldv1.MessagingServiceClient
	recipient heraldv1.RecipientServiceClient
}

func startGateway(t testing.TB, opts ...func(*Config)) *gateway {
	t.Helper()
	rs := redistest.Start(t)
	return startGatewayOn(t, rs, opts...)
}

// startGatewayOn starts a gateway on an existing store, as a second replica would.
func startGatewayOn(t testing.TB, rs *redistest.Server, opts ...func(*Config)) *gateway {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second,
		WriteTimeout: 2 * time.Second, MaxRetries: 1})
	g := startGatewayWith(t, rdb, opts...)
	g.redis, g.rdb = rs, rs.Client
	return g
}

// startGatewayWith starts a gateway on any Redis client (a cluster client, say),
// which it closes at the end.
func startGatewayWith(t testing.TB, rdb redis.UniversalClient, opts ...func(*Config)) *gateway {
	t.Helper()
	cfg := Config{Redis: rdb, Secret: []byte("test-secret-0123456789"), AdminToken: testAdminToken,
		// Warnings and errors show beside a failing test; every call's access line would
		// drown them.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn := serveOn(t, srv.Serve)
	adminConn := serveOn(t, srv.ServeAdmin)
	t.Cleanup(func() {
		conn.Close()
		adminConn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		rdb.Close()
	})
	return &gateway{t: t, addr: conn.Target(), srv: srv, conn: conn, adminConn: adminConn,
		admin:     heraldv1.NewAdminServiceClient(adminConn),
		messaging: heraldv1.NewMessagingServiceClient(conn),
		recipient: heraldv1.NewRecipientServiceClient(conn)}
}

// serveOn serves one of a Server's listeners (Serve or ServeAdmin) on a loopback
// port and returns a plaintext connection to it, which the caller closes.
func serveOn(t testing.TB, serve func(net.Listener) error) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func as(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func (g *gateway) adminCtx() context.Context { return as(testAdminToken) }

// newBusiness creates a business and returns its id and API key.
func (g *gateway) newBusiness(name string) (string, string) {
	g.t.Helper()
	b, err := g.admin.CreateBusiness(g.adminCtx(), &heraldv1.CreateBusinessRequest{DisplayName: name})
	if err != nil {
		g.t.Fatal(err)
	}
	k, err := g.admin.IssueApiKey(g.adminCtx(), &heraldv1.IssueApiKeyRequest{BusinessId: b.BusinessId})
	if err != nil {
		g.t.Fatal(err)
	}
	// Limits so high they never bind, unless a test of limits sets its own.
	g.setLimits(b.BusinessId, 1e6, 1e6, 0)
	return b.BusinessId, k.ApiKey
}

// setLimits sets a business's limits; daily 0 means unlimited.
func (g *gateway) setLimits(biz string, perSecond float64, burst, daily uint32) {
	g.t.Helper()
	if _, err := g.admin.SetBusinessLimits(g.adminCtx(), &heraldv1.SetBusinessLimitsRequest{BusinessId: biz,
		MessagesPerSecond: perSecond, Burst: burst, DailyUniqueRecipients: daily, UnlimitedUniqueRecipients: daily == 0}); err != nil {
		g.t.Fatal(err)
	}
}

// device is a registered device: its id and token.
type device struct {
	id, token string
}

// firstDevices are the first device of each number registered through register, by
// store and number: the device that approves the number's later devices, as the
// person would.
var firstDevices = struct {
	sync.Mutex
	m map[string]approver
}{m: map[string]approver{}}

// approver approves a pending device with the key id the person compared.
type approver func(deviceID, keyID string) error

// approverOf is the approver that device d is.
func (g *gateway) approverOf(d device) approver {
	return func(id, keyID string) error {
		_, err := g.recipient.ApproveDevice(as(d.token), &heraldv1.ApproveDeviceRequest{DeviceId: id, KeyId: keyID})
		return err
	}
}

// register registers a device for number; a later device of the number is approved by
// the first.
func (g *gateway) register(number string) device {
	g.t.Helper()
	code, err := g.admin.IssueVerificationCode(g.adminCtx(), &heraldv1.IssueVerificationCodeRequest{PhoneNumber: number})
	if err != nil {
		g.t.Fatal(err)
	}
	pub := x25519Key()
	r, err := g.recipient.RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{PhoneNumber: number,
		Code: code.Code, PublicKey: pub, KeyAlgorithm: heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_X25519})
	if err != nil {
		g.t.Fatal(err)
	}
	d := device{id: r.DeviceId, token: r.DeviceToken}
	g.approve(number, g.approverOf(d), d.id, r.Pending, e2e.KeyID(pub))
	g.verifyWindowPassed(number)
	return d
}

// verifyWindowPassed forgets the number's verification counts, as if its window had
// passed: tests register more devices to one number than it may be issued codes for
// in one window (delivery.CodeIssues).
func (g *gateway) verifyWindowPassed(number string) {
	g.t.Helper()
	e164, err := phone.Parse(number)
	if err != nil {
		g.t.Fatal(err)
	}
	if err := g.srv.cfg.Redis.Del(context.Background(), keys.Recipient(g.srv.uid(e164)).VerifyCounts()).Err(); err != nil {
		g.t.Fatal(err)
	}
}

// approve has the first device of number registered through this harness approve the
// device id, if it is pending, as the person would; a device that is not pending (d
// approves for it) becomes the number's first.
func (g *gateway) approve(number string, d approver, id string, pending bool, keyID string) {
	g.t.Helper()
	// By store and digits, so that two spellings of a number are one person.
	store := fmt.Sprintf("%p/", g.rdb)
	if g.redis != nil {
		store = g.redis.Addr + "/"
	}
	store += strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, number)
	firstDevices.Lock()
	first, ok := firstDevices.m[store]
	if !pending {
		firstDevices.m[store] = d
	}
	firstDevices.Unlock()
	if !pending {
		return
	}
	if !ok {
		g.t.Fatalf("device of %s pending, and no first device to approve it", number)
	}
	if err := first(id, keyID); err != nil {
		g.t.Fatalf("approve %s's device: %v", number, err)
	}
}

// seal stands in for the business SDK's encryption: the envelope must not contain
// the plaintext, so that the Redis scan below can look for it.
func seal(plaintext, deviceID string) []byte {
	b := []byte(deviceID + ":" + plaintext)
	for i := range b {
		b[i] ^= 0x5a
	}
	return b
}

func open(ct []byte) string {
	b := append([]byte(nil), ct...)
	for i := range b {
		b[i] ^= 0x5a
	}
	return string(b)
}

func msg(to string, cat heraldv1.Category, kind heraldv1.Kind, id, text string, devs ...device) *heraldv1.Message {
	m := &heraldv1.Message{Recipient: to, Category: cat, Kind: kind, ClientMessageId: id}
	for _, d := range devs {
		m.Envelopes = append(m.Envelopes, &heraldv1.Envelope{DeviceId: d.id, Ciphertext: seal(text, d.id)})
	}
	return m
}

func (g *gateway) send(key string, m *heraldv1.Message) *heraldv1.Result {
	g.t.Helper()
	r, err := g.messaging.Send(as(key), &heraldv1.SendRequest{Message: m})
	if err != nil {
		g.t.Fatalf("Send: %v", err)
	}
	return r.Result
}

// receiver is an open Receive stream.
type receiver struct {
	t      testing.TB
	cancel context.CancelFunc
	ch     chan *heraldv1.Delivery
	// notices are the device notices the stream sent, for tests that look.
	notices chan *heraldv1.DeviceNotice
	errc    chan error
}

func (g *gateway) receive(d device) *receiver {
	g.t.Helper()
	ctx, cancel := context.WithCancel(as(d.token))
	st, err := g.recipient.Receive(ctx, &heraldv1.ReceiveRequest{})
	if err != nil {
		g.t.Fatal(err)
	}
	r := &receiver{t: g.t, cancel: cancel, ch: make(chan *heraldv1.Delivery, 1000), notices: make(chan *heraldv1.DeviceNotice, 100),
		errc: make(chan error, 1)}
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) && grpcstatus.Code(err) != codes.Canceled {
					r.errc <- err
				}
				close(r.ch)
				return
			}
			if n := m.GetNotice(); n != nil {
				select {
				case r.notices <- n:
				default: // a test that does not read notices
				}
				continue
			}
			r.ch <- m.GetDelivery()
		}
	}()
	g.t.Cleanup(cancel)
	return r
}

// next waits for the next delivery.
func (r *receiver) next() *heraldv1.Delivery {
	r.t.Helper()
	select {
	case d, ok := <-r.ch:
		if !ok {
			select {
			case err := <-r.errc:
				r.t.Fatalf("receive stream ended: %v", err)
			default:
			}
			r.t.Fatal("receive stream ended")
		}
		return d
	case <-time.After(10 * time.Second):
		r.t.Fatal("no delivery within 10s")
	}
	return nil
}

// none checks that nothing arrives within d.
func (r *receiver) none(d time.Duration) {
	r.t.Helper()
	select {
	case m, ok := <-r.ch:
		if ok {
			r.t.Fatalf("unexpected delivery %s (%s)", m.MessageId, open(m.Ciphertext))
		}
	case <-time.After(d):
	}
}

// requireCode checks a gRPC error's code and, for INVALID_ARGUMENT, that a
// BadRequest names field.
func requireCode(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	if grpcstatus.Code(err) != code {
		t.Fatalf("got %v, want %s", err, code)
	}
	if field == "" {
		return
	}
	for _, d := range grpcstatus.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.FieldViolations {
				if v.Field == field {
					return
				}
			}
			t.Fatalf("BadRequest names %v, want %s", br.FieldViolations, field)
		}
	}
	t.Fatalf("%v has no BadRequest detail", err)
}

// snapshot returns every key and value in the store, rendered as text, but for the
// businesses' rate buckets (of messages and of lookups): gateways lease from and give back to those in the
// background on their own clock, which is not a change any request makes.
func snapshot(t *testing.T, rdb *redis.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasSuffix(k, ":gcra") || strings.HasSuffix(k, ":leasers") {
			continue
		}
		typ := rdb.Type(ctx, k).Val()
		var v any
		switch typ {
		case "string":
			v = rdb.Get(ctx, k).Val()
		case "hash":
			v = rdb.HGetAll(ctx, k).Val()
		case "set":
			v = rdb.SMembers(ctx, k).Val()
		case "zset":
			v = rdb.ZRangeWithScores(ctx, k, 0, -1).Val()
		case "list":
			v = rdb.LRange(ctx, k, 0, -1).Val()
		case "stream":
			v = rdb.XRange(ctx, k, "-", "+").Val()
		case "none":
			continue // deleted since KEYS ran
		default:
			t.Fatalf("key %s has unexpected type %s", k, typ)
		}
		out[k] = typeString(typ, v)
	}
	return out
}

func typeString(typ string, v any) string { return typ + " " + fmt.Sprint(v) }

// clock is a test clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func withClock(c *clock) func(*Config) { return func(cfg *Config) { cfg.Now = c.Now } }

// quiet waits until the store stops changing (background forwarding done) and
// returns its snapshot.
func quiet(t *testing.T, rdb *redis.Client) map[string]string {
	t.Helper()
	prev := snapshot(t, rdb)
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		cur := snapshot(t, rdb)
		if maps.Equal(prev, cur) {
			return cur
		}
		prev = cur
	}
	t.Fatal("the store kept changing")
	return nil
}

// unchanged fails if the store differs from before.
func unchanged(t *testing.T, rdb *redis.Client, before map[string]string) {
	t.Helper()
	time.Sleep(50 * time.Millisecond)
	after := snapshot(t, rdb)
	for k, v := range after {
		if before[k] != v {
			t.Errorf("state changed: %s = %s (was %q)", k, v, before[k])
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			t.Errorf("state changed: %s was deleted", k)
		}
	}
}

func nowPB() *timestamppb.Timestamp { return timestamppb.Now() }

func codeOf(err error) codes.Code { return grpcstatus.Code(err) }

// x25519Key is a fresh X25519 public key, which registration accepts.
func x25519Key() []byte {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k.PublicKey().Bytes()
}
