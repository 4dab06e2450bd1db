package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/delivery"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/keys"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
)

// The abuse suite: each attack of issue 11, over real sockets, with the refusal it
// must meet and what the gateway (its heap, measured in this process) and Redis (its
// keys) may hold under it. The bounds are bytes and counts, never times. The tests
// that measure the heap do not run in parallel, so that nothing else allocates
// meanwhile.

// Unauthenticated requests are refused before they are read: eight calls announcing
// 60 MiB (over every limit) and eight of 15 MiB (under SendBatch's) with credentials
// missing, malformed or wrong, all at once, leave the heap where it was but for the
// streams' windows. Before, each was read whole before its token was looked at: eight
// unauthenticated 60 MiB requests took heraldd from 22 to 577 MiB.
func TestAbuseLargeUnauthenticatedRequests(t *testing.T) {
	g := startGateway(t)
	raw, adminRaw := newRawGRPC(t, g.addr), newRawGRPC(t, g.adminConn.Target())
	ctx := context.Background()
	calls := []struct {
		method, token string
	}{
		{"/herald.v1.MessagingService/SendBatch", ""},
		{"/herald.v1.MessagingService/SendBatch", "hk_unknownkey_" + strings.Repeat("a", 40)},
		{"/herald.v1.MessagingService/Send", "not-a-key"},
		{"/herald.v1.MessagingService/LookupRecipient", "hk_unknownkey_" + strings.Repeat("b", 40)},
		{"/herald.v1.RecipientService/Ack", "hd_" + strings.Repeat("a", 26) + "_dnothere_" + strings.Repeat("c", 32)},
		{"/herald.v1.RecipientService/Block", ""},
		{"/herald.v1.AdminService/CreateBusiness", "wrong-admin-token-0123456789"},
		{"/herald.v1.AdminService/IssueApiKey", ""},
	}
	const bound = 16 * mib
	probe := probeHeap()
	got := make([]codes.Code, 2*len(calls))
	concurrently(2*len(calls), func(i int) {
		c := calls[i%len(calls)]
		size := 60 * mib
		if i >= len(calls) {
			size = 15 * mib // under SendBatch's limit: only the credentials can refuse it unread
		}
		r := raw
		if strings.HasPrefix(c.method, "/herald.v1.AdminService/") {
			r = adminRaw // AdminService is on the admin listener only
		}
		got[i] = r.call(ctx, c.method, c.token, nil, size, nil).Code()
	})
	grown := probe.grown()
	for i, code := range got {
		if code != codes.Unauthenticated {
			t.Errorf("%s with token %q: %v, want UNAUTHENTICATED", calls[i%len(calls)].method, calls[i%len(calls)].token, code)
		}
	}
	t.Logf("16 unauthenticated requests of 15 and 60 MiB: the heap rose %.1f MiB at most", float64(grown)/mib)
	if grown > bound {
		t.Fatalf("the heap rose %.1f MiB under unauthenticated requests; the bound is %d MiB", float64(grown)/mib, bound/mib)
	}
}

// Calls that need no credentials are read in a few slots only: twelve RegisterDevice
// calls of 15 MiB at once from one address, with two slots per address, have two read
// at a time (refused as too large for the method once read), the rest refused
// RESOURCE_EXHAUSTED before a byte is read.
func TestAbuseLargeOpenCalls(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.Limits.OpenCallsPerPeer = 2 })
	raw := newRawGRPC(t, g.addr)
	ctx := context.Background()
	const calls, size = 12, 15 * mib
	const bound = 2*size + 16*mib
	probe := probeHeap()
	got := make([]*struct {
		code   codes.Code
		reason string
	}, calls)
	concurrently(calls, func(i int) {
		st := raw.call(ctx, registerMethod, "", nil, size, nil)
		got[i] = &struct {
			code   codes.Code
			reason string
		}{st.Code(), st.Message()}
	})
	grown := probe.grown()
	read := 0
	for _, s := range got {
		switch {
		case s.code != codes.ResourceExhausted:
			t.Errorf("a 15 MiB RegisterDevice: %v %q, want RESOURCE_EXHAUSTED", s.code, s.reason)
		case strings.Contains(s.reason, "over this method's limit"):
			read++
		}
	}
	t.Logf("%d RegisterDevice calls of 15 MiB: %d read (and refused as too large), the heap rose %.1f MiB at most",
		calls, read, float64(grown)/mib)
	if grown > bound {
		t.Fatalf("the heap rose %.1f MiB; the bound is %d MiB (two slots of 15 MiB)", float64(grown)/mib, bound/mib)
	}

}

// An open call that sends its headers and never its request holds its slot for
// OpenCallRead, no longer.
func TestAbuseOpenCallThatNeverSends(t *testing.T) {
	t.Parallel()
	g := startGateway(t, func(c *Config) { c.Limits.OpenCallRead = 200 * time.Millisecond })
	stalled, stop := io.Pipe()
	defer stop.Close()
	if st := newRawGRPC(t, g.addr).call(context.Background(), registerMethod, "", nil, 100, stalled); st.Code() != codes.Canceled {
		t.Fatalf("an open call whose request never comes: %v, want CANCELLED", st)
	}
	waitUntil(t, "the open slot to be given back", func() bool {
		g.srv.openCalls.mu.Lock()
		defer g.srv.openCalls.mu.Unlock()
		return g.srv.openCalls.total == 0
	})
}

// Open calls that never send their requests, from one address, take every slot that
// address has, and registrations from it wait; a load balancer's health check from
// that same address is still answered, in slots of its own.
func TestAbuseStalledOpenCallsDoNotStarveHealth(t *testing.T) {
	t.Parallel()
	g := startGateway(t, func(c *Config) { c.Limits.OpenCallRead = time.Minute })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	raw := newRawGRPC(t, g.addr)
	var stops []*io.PipeWriter
	defer func() {
		for _, w := range stops {
			w.Close()
		}
	}()
	for range g.srv.limits.OpenCallsPerPeer {
		r, w := io.Pipe()
		stops = append(stops, w)
		go raw.call(ctx, registerMethod, "", nil, 100, r)
	}
	waitUntil(t, "the stalled calls to take the address's slots", func() bool {
		g.srv.openCalls.mu.Lock()
		defer g.srv.openCalls.mu.Unlock()
		return g.srv.openCalls.total == g.srv.limits.OpenCallsPerPeer
	})
	resp, err := grpc_health_v1.NewHealthClient(g.conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("a health check while the open calls are taken: %v, %v", resp, err)
	}
}

// waitUntil waits for cond, failing the test if it does not come within a generous
// time: it waits for things that happen, never asserts how fast.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20s for %s", what)
		}
	}
}

// fillMailbox sends n messages to the device of number, each an envelope of 64 KiB
// and a body of 64 KiB of its own, and returns their ids.
func fillMailbox(t *testing.T, g *gateway, key, number string, d device, n int) []string {
	t.Helper()
	req := &heraldv1.SendBatchRequest{}
	for i := range n {
		body := make([]byte, 64<<10)
		copy(body, fmt.Sprint("body ", i))
		env := make([]byte, 64<<10)
		copy(env, fmt.Sprint("envelope ", i))
		req.Messages = append(req.Messages, &heraldv1.Message{Recipient: number, Category: tx, Kind: rcpt,
			ClientMessageId: fmt.Sprint("big-", i), Body: body,
			Envelopes: []*heraldv1.Envelope{{DeviceId: d.id, Ciphertext: env}}})
	}
	resp, err := g.messaging.SendBatch(as(key), req)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, r := range resp.Results {
		if r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
			t.Fatalf("message %d: %v", i, r)
		}
		ids = append(ids, r.MessageId)
	}
	return ids
}

// Receive streams that never read: a device whose mailbox holds 48 messages of 128
// KiB opens 40 streams on connections whose windows take 64 KiB. It gets 4 (the most
// per device), the rest are refused RESOURCE_EXHAUSTED, and what the 4 make the
// gateway hold is a fetch of about 256 KiB of envelopes each and gRPC's buffers. Before, every stream
// was served and held a fetch of 64 messages: 150 such streams took heraldd's RSS to
// 849 MiB.
func TestAbuseStreamsThatNeverRead(t *testing.T) {
	g := startGateway(t)
	_, key := g.newBusiness("Acme")
	d := g.register(alice)
	fillMailbox(t, g, key, alice, d, 48)
	const streams, bound = 40, 24 * mib
	base := heapInUse()
	conn := smallWindowConn(t, g.addr)
	recipient := heraldv1.NewRecipientServiceClient(conn)
	ctx, cancel := context.WithCancel(as(d.token))
	defer cancel()
	refused := 0
	for i := range streams {
		st, err := recipient.Receive(ctx, &heraldv1.ReceiveRequest{})
		if err != nil {
			t.Fatal(err)
		}
		// The headers come with the first delivery, which the gateway sends whether or
		// not the client reads: the stream is being served. A refused stream ends with
		// its status instead.
		if _, err := st.Header(); err != nil {
			t.Fatal(err)
		}
		if i < DefaultLimits.StreamsPerToken {
			continue // never read
		}
		if _, err := st.Recv(); codeOf(err) != codes.ResourceExhausted {
			t.Fatalf("stream %d of one device: %v, want RESOURCE_EXHAUSTED", i+1, err)
		}
		refused++
	}
	held := heldAbove(base)
	t.Logf("%d Receive streams that never read: %d refused, the heap holds %.1f MiB more", streams, refused, float64(held)/mib)
	if held > bound {
		t.Fatalf("the heap holds %.1f MiB more with streams that never read; the bound is %d MiB", float64(held)/mib, bound/mib)
	}
}

// smallWindowConn is a client connection whose flow-control windows are gRPC's
// smallest: a client that does not read holds at most 64 KiB of what was sent to it.
func smallWindowConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// A stream whose client stops reading ends after SendTimeout, and frees its place: what
// it did not deliver stays queued, for the device's next stream.
func TestAbuseStreamThatStopsReadingEnds(t *testing.T) {
	t.Parallel()
	g := startGateway(t, func(c *Config) { c.Limits.SendTimeout = 200 * time.Millisecond })
	_, key := g.newBusiness("Acme")
	d := g.register(alice)
	ids := fillMailbox(t, g, key, alice, d, 8)
	conn := smallWindowConn(t, g.addr)
	ctx, cancel := context.WithCancel(as(d.token))
	defer cancel()
	st, err := heraldv1.NewRecipientServiceClient(conn).Receive(ctx, &heraldv1.ReceiveRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Header(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the gateway to end the stream its client does not read", func() bool {
		g.srv.streamCounts.mu.Lock()
		defer g.srv.streamCounts.mu.Unlock()
		return len(g.srv.streamCounts.open) == 0
	})
	r := g.receive(d)
	for _, id := range ids {
		if got := r.next(); got.MessageId != id {
			t.Fatalf("the next stream got %s, want %s (in order, none lost)", got.MessageId, id)
		}
	}
}

// Idle streams: a device gets 4 Receive streams and an API key 4 StreamStatus streams
// per gateway, however many it opens, so the Redis polls of idle streams grow with
// devices and keys, not with streams (5,000 idle streams made about 1,000 script calls
// a second); and a gateway keeps at most MaxConnections connections, closing the
// others at once.
func TestAbuseManyIdleStreamsAndConnections(t *testing.T) {
	t.Parallel()
	g := startGateway(t, func(c *Config) { c.Limits.MaxConnections = 6 })
	_, key := g.newBusiness("Acme")
	d := g.register(alice)
	const tries = 50
	per := DefaultLimits.StreamsPerToken
	for _, kind := range []struct {
		name string
		open func(ctx context.Context) (interface{ RecvMsg(any) error }, error)
	}{
		{"Receive", func(ctx context.Context) (interface{ RecvMsg(any) error }, error) {
			return g.recipient.Receive(metadataFrom(ctx, d.token), &heraldv1.ReceiveRequest{})
		}},
		{"StreamStatus", func(ctx context.Context) (interface{ RecvMsg(any) error }, error) {
			return g.messaging.StreamStatus(metadataFrom(ctx, key), &heraldv1.StreamStatusRequest{})
		}},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		ended := make(chan codes.Code, tries)
		for range tries {
			st, err := kind.open(ctx)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				var m heraldv1.StatusEvent
				for {
					// An idle stream sends nothing; one refused ends at once.
					if err := st.RecvMsg(&m); err != nil {
						ended <- codeOf(err)
						return
					}
				}
			}()
		}
		refused := 0
		waitUntil(t, kind.name+" streams beyond the cap to be refused", func() bool {
			for {
				select {
				case c := <-ended:
					if c != codes.ResourceExhausted {
						t.Fatalf("a %s stream ended %v, want RESOURCE_EXHAUSTED", kind.name, c)
					}
					refused++
					continue
				default:
				}
				return refused == tries-per
			}
		})
		g.srv.streamCounts.mu.Lock()
		open := len(g.srv.streamCounts.open)
		served := 0
		for _, n := range g.srv.streamCounts.open {
			served += n
		}
		g.srv.streamCounts.mu.Unlock()
		if open != 1 || served != per {
			t.Fatalf("%d %s streams opened: %d served for %d credentials, want %d for 1", tries, kind.name, served, open, per)
		}
		cancel()
		waitUntil(t, "the streams to close", func() bool {
			g.srv.streamCounts.mu.Lock()
			defer g.srv.streamCounts.mu.Unlock()
			return len(g.srv.streamCounts.open) == 0
		})
	}

	// Connections: the harness's client holds one; of ten more, five are kept and five
	// closed at once.
	var closed atomic.Int64
	for range 10 {
		c := dialTCP(t, g.addr)
		go func() {
			if _, err := c.Read(make([]byte, 1)); err != nil {
				closed.Add(1)
			}
		}()
	}
	waitUntil(t, "connections beyond the cap to be closed", func() bool {
		return closed.Load() == 5 && g.srv.openConns.Load() == 6
	})
}

// metadataFrom is ctx with the bearer token.
func metadataFrom(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// recordConsent records an opt-in for number as business key.
func recordConsent(g *gateway, key, number string) error {
	_, err := g.messaging.RecordConsent(as(key), &heraldv1.RecordConsentRequest{Recipient: number, Category: mk,
		Consent: heraldv1.Consent_CONSENT_OPTED_IN, Evidence: &heraldv1.ConsentEvidence{Source: "web form",
			CollectedTime: nowPB()}})
	return err
}

// recipientKeys are the keys of recipients in the store.
func recipientKeys(t *testing.T, g *gateway) []string {
	t.Helper()
	ks, err := g.rdb.Keys(context.Background(), "hr:{u:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// RecordConsent after the allowance is spent, and for numbers nobody registered: a
// number the business never reached spends its new-recipient allowance, as a send
// or lookup does, and beyond it nothing is written; what is written for a number
// without devices expires, unless the number registers. Before, a business ran 9,523
// calls a second after its allowance was spent, each leaving about 5.6 KB in Redis
// with no expiry.
func TestAbuseRecordConsentBeyondTheAllowance(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	biz, key := g.newBusiness("Acme")
	g.setLimits(biz, 1e6, 1e6, 3)
	number := func(i int) string { return fmt.Sprintf("+1415558%04d", i) }
	for i := range 3 {
		if err := recordConsent(g, key, number(i)); err != nil {
			t.Fatalf("a consent for new person %d, within the allowance: %v", i+1, err)
		}
	}
	before := recipientKeys(t, g)
	for i := 3; i < 203; i++ {
		err := recordConsent(g, key, number(i))
		if codeOf(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "daily unique") {
			t.Fatalf("a consent for new person %d, beyond the allowance of 3: %v, want RESOURCE_EXHAUSTED", i+1, err)
		}
	}
	if after := recipientKeys(t, g); len(after) != len(before) {
		t.Fatalf("200 refused consents left %d recipient keys, want %d", len(after), len(before))
	}
	// Nobody registered those numbers: everything the calls wrote expires.
	ctx := context.Background()
	for _, k := range before {
		if ttl := g.rdb.PTTL(ctx, k).Val(); ttl <= 0 || ttl > 30*24*time.Hour {
			t.Errorf("%s, written for a number without devices, lives %v", k, ttl)
		}
	}
	// The person registers: what the business recorded stays, and governs.
	d := g.register(number(0))
	for _, k := range recipientKeys(t, g) {
		if strings.Contains(k, ":pref:") || strings.HasSuffix(k, ":biz") || strings.HasSuffix(k, ":bclog") {
			if ttl := g.rdb.PTTL(ctx, k).Val(); ttl != -1 && strings.Contains(k, g.srv.uid(number(0))) {
				t.Errorf("%s still expires (%v) after its number registered", k, ttl)
			}
		}
	}
	if r := g.send(key, offerTo(number(0), "offer-1", d)); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("an offer on the recorded opt-in, after the person registered: %v", r)
	}
}

// Lookups beyond the business's lookup rate are refused, with the wait, and reveal
// nothing; a business sending through the SDK (which caches a person's devices) does
// not meet the limit. Before, a business limited to 1 message a second checked 9,981
// numbers a second.
func TestAbuseLookupsBeyondTheRate(t *testing.T) {
	t.Parallel()
	c := newClock() // frozen: the lookup bucket never refills during the test
	g := startGateway(t, withClock(c))
	biz, key := g.newBusiness("Acme")
	g.setLimits(biz, 10, 10, 0) // lookups: 20 a second, bursts of 20
	g.register(alice)
	signer, _ := e2e.GenerateSigningKey()
	sdk := client.NewBusiness(g.conn, biz, key, signer, client.WithLookupTTL(time.Hour))
	if err := sdk.RegisterSigningKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		if _, err := sdk.Send(context.Background(), alice, e2e.Transactional, e2e.Receipt, []byte("receipt")); err != nil {
			t.Fatalf("send %d through the SDK: %v", i+1, err)
		}
	}
	answered, refused := 0, 0
	for range 100 {
		r, err := g.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: alice, Category: tx})
		switch {
		case err == nil && r.Outcome == heraldv1.Outcome_OUTCOME_ACCEPTED:
			answered++
		case codeOf(err) == codes.ResourceExhausted && retryDelay(err) > 0:
			refused++
		default:
			t.Fatalf("lookup: %v, %v", r, err)
		}
	}
	// The SDK's one lookup and these share the burst of 20.
	if answered != 19 || refused != 81 {
		t.Fatalf("100 lookups: %d answered, %d refused; want 19 and 81 (a burst of 20, one spent by the SDK)", answered, refused)
	}
}

// retryDelay is the RetryInfo delay of a status error, or 0.
func retryDelay(err error) time.Duration {
	for _, d := range grpcstatus.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// A business's records cannot push the person's own consent entries out of the log:
// the person's side is kept apart, and the business's side is bounded on its own.
// Before, 1,300 calls erased a person's consent log.
func TestAbuseConsentLogErasure(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	biz, key := g.newBusiness("Acme")
	d := g.register(alice)
	ctx := context.Background()
	for range 5 {
		optIn(t, g, d, biz)
	}
	u := keys.Recipient(g.srv.uid(alice))
	own := g.rdb.XRange(ctx, u.ConsentLog(), "-", "+").Val()
	for i := range 1300 {
		if err := recordConsent(g, key, alice); err != nil {
			t.Fatalf("record %d: %v", i+1, err)
		}
	}
	after := g.rdb.XRange(ctx, u.ConsentLog(), "-", "+").Val()
	if len(after) != len(own) || len(own) != 5 || after[0].ID != own[0].ID {
		t.Fatalf("the person's own log: %d entries before the business's records, %d after; want the 5 kept", len(own), len(after))
	}
	// Redis trims whole nodes of 100 entries: the business's side holds about its cap.
	if n := g.rdb.XLen(ctx, u.BusinessConsentLog()).Val(); n > businessLogBound {
		t.Fatalf("the businesses' side of the log holds %d entries, over %d", n, businessLogBound)
	}
}

// businessLogBound is the most entries the businesses' side of a person's consent
// log holds: its cap of 256 and a node of trimming slack.
const businessLogBound = 256 + 100

// Verification codes: re-issuing a code gives no new tries, a number gets at most
// CodeIssues codes a window, and one client's wrong guesses across numbers are
// limited; every failure is logged at warn, without the number or the code. Before,
// re-issuing reset a code's five tries, and nothing limited issuing or guessing (9,900
// guesses a second).
func TestAbuseVerificationCodes(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	g := startGateway(t, withClock(newClock()), func(c *Config) { // frozen: no guesses come back
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	issue := func(number string) (string, error) {
		r, err := g.admin.IssueVerificationCode(g.adminCtx(), &heraldv1.IssueVerificationCodeRequest{PhoneNumber: number})
		return r.GetCode(), err
	}
	register := func(number, code string) error {
		_, err := g.recipient.RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{PhoneNumber: number,
			Code: code, PublicKey: x25519Key(), KeyAlgorithm: heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_X25519})
		return err
	}
	wrong := func(code string) string { return fmt.Sprintf("%08d", (mustAtoi(t, code)+1)%100_000_000) }
	var codesSeen []string
	// A new code before each wrong guess: the tries are the number's, not the code's.
	for i := range delivery.CodeTries {
		code, err := issue(alice)
		if err != nil {
			t.Fatal(err)
		}
		codesSeen = append(codesSeen, code)
		if err := register(alice, wrong(code)); codeOf(err) != codes.PermissionDenied {
			t.Fatalf("wrong code %d: %v", i+1, err)
		}
	}
	if err := register(alice, codesSeen[len(codesSeen)-1]); codeOf(err) != codes.ResourceExhausted {
		t.Fatalf("the right code after %d wrong ones: %v, want RESOURCE_EXHAUSTED", delivery.CodeTries, err)
	}
	if _, err := issue(alice); codeOf(err) != codes.ResourceExhausted {
		t.Fatalf("code %d for the number within the window: %v, want RESOURCE_EXHAUSTED", delivery.CodeIssues+1, err)
	}

	// One client guessing across numbers (each with its tries left) is stopped by its
	// own limit: it has guessed CodeTries times already.
	refused := 0
	for i := range 20 {
		number := fmt.Sprintf("+1415559%04d", i)
		code, err := issue(number)
		if err != nil {
			t.Fatal(err)
		}
		codesSeen = append(codesSeen, code)
		switch err := register(number, wrong(code)); codeOf(err) {
		case codes.PermissionDenied:
		case codes.ResourceExhausted:
			refused++
		default:
			t.Fatalf("a guess at number %d: %v", i, err)
		}
	}
	// Its wrong codes, and the right one offered to a locked number, all count.
	if guessed := 20 - refused + delivery.CodeTries + 1; guessed != guessBurst {
		t.Fatalf("one client made %d guesses before it was stopped; its limit is %d", guessed, guessBurst)
	}
	text := logs.String()
	if n := strings.Count(text, "verification failed"); n < delivery.CodeTries {
		t.Fatalf("%d failed verifications logged, want at least %d:\n%s", n, delivery.CodeTries, text)
	}
	if !strings.Contains(text, "level=WARN msg=\"verification failed\"") {
		t.Fatalf("failures are not logged at warn:\n%s", text)
	}
	for _, secret := range append(codesSeen, "4155550123", "41555590") {
		if strings.Contains(text, secret) {
			t.Fatalf("the log holds %q (a code or a number)", secret)
		}
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The pending-bytes quota: a business whose messages in flight hold its quota of bytes
// gets OUTCOME_QUOTA_EXCEEDED, and what it holds in Redis stays under the quota; room
// comes back as its messages are delivered. Before, nothing bounded what one business
// could queue (a message could hold about 1.4 MB for up to 31 days).
func TestAbusePendingBytesOverQuota(t *testing.T) {
	t.Parallel()
	const quota = 1 << 20
	c := newClock()
	g := startGateway(t, withClock(c), func(cfg *Config) { cfg.Limits.PendingBytesPerBusiness = quota })
	biz, key := g.newBusiness("Acme")
	d := g.register(alice)
	envelope := make([]byte, 64<<10)
	send := func(i int) *heraldv1.Result {
		return g.send(key, &heraldv1.Message{Recipient: alice, Category: tx, Kind: rcpt, ClientMessageId: fmt.Sprint("m", i),
			Envelopes: []*heraldv1.Envelope{{DeviceId: d.id, Ciphertext: envelope}}})
	}
	var accepted []string
	for i := 0; ; i++ {
		r := send(i)
		if r.Outcome == heraldv1.Outcome_OUTCOME_QUOTA_EXCEEDED {
			break
		}
		if r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED || i > 100 {
			t.Fatalf("message %d of 64 KiB: %v", i+1, r)
		}
		accepted = append(accepted, r.MessageId)
	}
	// What the business's messages hold, as Redis counts it once the events are in.
	ctx := context.Background()
	pending := func() int64 {
		v, _ := g.rdb.HGet(ctx, keys.Business(biz).Record(), keys.BusinessPending).Int64()
		return v
	}
	each := int64(64<<10 + 560 + 250)
	waitUntil(t, "the ACCEPTED events to be counted", func() bool { return pending() == int64(len(accepted))*each })
	t.Logf("%d messages of 64 KiB accepted under a quota of 1 MiB; the business's count: %d bytes", len(accepted), pending())
	if p := pending(); p > quota || p+each <= quota {
		t.Fatalf("refused at %d pending bytes, with a quota of %d and messages of %d", p, quota, each)
	}
	n, err := g.rdb.Keys(ctx, keys.Recipient(g.srv.uid(alice)).MessagePrefix()+"*").Result()
	if err != nil || len(n) > 2*len(accepted) {
		t.Fatalf("%d message and envelope keys for %d messages accepted (%v)", len(n), len(accepted), err)
	}

	// The device takes them all: settled, they leave the count, and the business may
	// send again once its gateway has read the count anew.
	if _, err := g.recipient.Ack(as(d.token), &heraldv1.AckRequest{MessageIds: accepted}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the settled events to be counted", func() bool { return pending() == 0 })
	c.Add(10 * time.Second)
	if r := send(1000); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("after the messages were delivered: %v", r)
	}
}

// A revoked API key's open StatusStream ends, as its calls stop working, within the
// revocation window. Before, the stream kept receiving.
func TestAbuseRevokedKeysStreamEnds(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	_, key := g.newBusiness("Acme")
	st, err := g.messaging.StreamStatus(as(key), &heraldv1.StreamStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := st.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	if _, err := g.admin.RevokeApiKey(g.adminCtx(), &heraldv1.RevokeApiKeyRequest{ApiKey: key}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		requireCode(t, err, codes.Unauthenticated, "")
	case <-time.After(20 * time.Second):
		t.Fatal("the stream of a revoked key was still open 20s after the revocation")
	}
	if keyRecheck > revocationWindow/2 {
		t.Fatalf("streams check their key every %v: a revoked key's stream could outlive the %v window", keyRecheck, revocationWindow)
	}
}

// A status cursor whose numbers do not fit 64 bits, and a request that is not
// protobuf, are the client's errors: INVALID_ARGUMENT. A request larger than its
// method allows is RESOURCE_EXHAUSTED. Before, the first two answered INTERNAL.
func TestAbuseMalformedInput(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	biz, key := g.newBusiness("Acme")
	for _, cur := range []string{biz + ".18446744073709551616-0", biz + ".1-18446744073709551616", biz + ".+1-0"} {
		st, err := g.messaging.StreamStatus(as(key), &heraldv1.StreamStatusRequest{Cursor: cur})
		if err == nil {
			_, err = st.Recv()
		}
		requireCode(t, err, codes.InvalidArgument, "cursor")
	}
	raw := newRawGRPC(t, g.addr)
	ctx := context.Background()
	garbage := []byte{0xff, 0xff, 0xff, 0xff, 0x0f}
	for _, c := range []struct {
		method, token string
	}{
		{"/herald.v1.MessagingService/Send", key},
		{"/herald.v1.MessagingService/StreamStatus", key},
		{registerMethod, ""},
	} {
		if st := raw.call(ctx, c.method, c.token, garbage, len(garbage), nil); st.Code() != codes.InvalidArgument {
			t.Errorf("%s with bytes that are not protobuf: %v, want INVALID_ARGUMENT", c.method, st)
		}
	}
	// AdminService, on its own listener.
	if st := newRawGRPC(t, g.adminConn.Target()).call(ctx, "/herald.v1.AdminService/CreateBusiness", testAdminToken, garbage,
		len(garbage), nil); st.Code() != codes.InvalidArgument {
		t.Errorf("CreateBusiness with bytes that are not protobuf: %v, want INVALID_ARGUMENT", st)
	}
	if st := raw.call(ctx, "/herald.v1.MessagingService/Send", key, nil, maxSendRequest+1, nil); st.Code() != codes.ResourceExhausted {
		t.Errorf("a Send of %d bytes: %v, want RESOURCE_EXHAUSTED", maxSendRequest+1, st)
	}
}
