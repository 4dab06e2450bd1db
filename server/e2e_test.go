package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/business"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/redistest"
)

// registerKey registers a device with a real e2e key.
func (g *gateway) registerKey(number string, alg e2e.Algorithm) (device, *e2e.DeviceKey) {
	g.t.Helper()
	k, err := e2e.GenerateDeviceKey(alg)
	if err != nil {
		g.t.Fatal(err)
	}
	code, err := g.admin.IssueVerificationCode(g.adminCtx(), &heraldv1.IssueVerificationCodeRequest{PhoneNumber: number})
	if err != nil {
		g.t.Fatal(err)
	}
	r, err := g.recipient.RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{PhoneNumber: number,
		Code: code.Code, PublicKey: k.PublicKey(), KeyAlgorithm: heraldv1.KeyAlgorithm(alg)})
	if err != nil {
		g.t.Fatal(err)
	}
	if r.KeyId != k.KeyID() {
		g.t.Fatalf("key id = %s, want %s", r.KeyId, k.KeyID())
	}
	d := device{id: r.DeviceId, token: r.DeviceToken}
	g.approve(number, g.approverOf(d), d.id, r.Pending, k.KeyID())
	return d, k
}

// TestKeyRotation: after a device rotates its key, a send sealed to the old key is
// STALE_DEVICES naming the device; a message queued before rotation still carries
// the old key id, so the device knows which key opens it.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	_, key := g.newBusiness("Acme")
	phone, oldKey := g.registerKey(alice, e2e.X25519)
	env := func(id, keyID string) *heraldv1.Message {
		m := msg(alice, tx, rcpt, id, "x", phone)
		m.Envelopes[0].KeyId = keyID
		return m
	}
	queued := g.send(key, env("before", oldKey.KeyID()))
	newKey, _ := e2e.GenerateDeviceKey(e2e.X25519)
	ch, err := g.recipient.GetKeyChallenge(as(phone.token), &heraldv1.GetKeyChallengeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	answer, err := oldKey.OpenChallenge(ch.Challenge)
	if err != nil {
		t.Fatal(err)
	}
	rot, err := g.recipient.RotateKey(as(phone.token), &heraldv1.RotateKeyRequest{PublicKey: newKey.PublicKey(),
		KeyAlgorithm: heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_X25519, ChallengeResponse: answer, ChallengeExpireTime: ch.ExpireTime})
	if err != nil || rot.KeyId != newKey.KeyID() {
		t.Fatalf("rotate = %v, %v", rot, err)
	}
	r := g.send(key, env("after-old", oldKey.KeyID()))
	if r.Outcome != heraldv1.Outcome_OUTCOME_STALE_DEVICES || len(r.RetiredKeyDeviceIds) != 1 || r.RetiredKeyDeviceIds[0] != phone.id {
		t.Fatalf("send to a retired key = %v", r)
	}
	look, err := g.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: alice, Category: tx})
	if err != nil || look.Devices[0].KeyId != newKey.KeyID() {
		t.Fatalf("lookup after rotation = %v, %v", look, err)
	}
	if r := g.send(key, env("after-new", newKey.KeyID())); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("send to the new key = %v", r)
	}
	rc := g.receive(phone)
	if d := rc.next(); d.MessageId != queued.MessageId || d.KeyId != oldKey.KeyID() {
		t.Fatalf("queued delivery = %v, want the old key id", d)
	}
	if d := rc.next(); d.KeyId != newKey.KeyID() {
		t.Fatalf("new delivery key id = %s", d.KeyId)
	}
}

// TestBroadcastStoresBodyOnce sends one sealed 4 KiB body to 1000 people and
// measures what Redis holds for it. To tell the broadcast's content from the
// bookkeeping every message has (mailbox entry, idempotency, status event), the same
// 1000 people first get a baseline message of 1-byte envelopes (after a first one that
// sets up each person's relation to the business); the content's cost is the
// difference.
func TestBroadcastStoresBodyOnce(t *testing.T) {
	t.Parallel()
	if redistest.Memory() {
		t.Skip("measures redis-server's memory")
	}
	if testing.Short() {
		t.Skip("registers 1000 devices")
	}
	g := startGateway(t)
	biz, key := g.newBusiness("Acme")
	signer, _ := e2e.GenerateSigningKey()
	const n = 1000
	var recips []e2e.Recipient
	numbers := make([]string, n)
	devs := make([]device, n)
	for i := range n {
		numbers[i] = fmt.Sprintf("+1415556%04d", i)
		k, _ := e2e.GenerateDeviceKey(e2e.MLKEM768X25519)
		code, err := g.admin.IssueVerificationCode(g.adminCtx(), &heraldv1.IssueVerificationCodeRequest{PhoneNumber: numbers[i]})
		if err != nil {
			t.Fatal(err)
		}
		r, err := g.recipient.RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{PhoneNumber: numbers[i],
			Code: code.Code, PublicKey: k.PublicKey(), KeyAlgorithm: heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_MLKEM768_X25519})
		if err != nil {
			t.Fatal(err)
		}
		devs[i] = device{id: r.DeviceId, token: r.DeviceToken}
		recips = append(recips, e2e.Recipient{DeviceID: r.DeviceId, PublicKey: k.PublicKey(), Algorithm: e2e.MLKEM768X25519})
	}
	body := []byte(strings.Repeat("Spring sale: everything 20% off. ", 4096/33+1))[:4096]
	sealed, err := e2e.Seal(signer, e2e.Header{BusinessID: biz, Category: e2e.Transactional, Kind: e2e.Receipt,
		ClientMessageID: "spring", SentTime: time.Now()}, body, recips)
	if err != nil {
		t.Fatal(err)
	}
	send := func(id string, withBody bool) {
		t.Helper()
		req := &heraldv1.SendBatchRequest{}
		for i := range n {
			m := &heraldv1.Message{Recipient: numbers[i], Category: tx, Kind: rcpt, ClientMessageId: id,
				Envelopes: []*heraldv1.Envelope{{DeviceId: devs[i].id, Ciphertext: []byte{1}}}}
			if withBody {
				m.Body, m.Envelopes[0].Ciphertext = sealed.Body, sealed.Wraps[devs[i].id]
			}
			req.Messages = append(req.Messages, m)
		}
		resp, err := g.messaging.SendBatch(as(key), req)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range resp.Results {
			if r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
				t.Fatalf("result %d: %v", i, r)
			}
		}
	}
	wrapBytes := 0
	for _, w := range sealed.Wraps {
		wrapBytes += len(w)
	}

	send("first-contact", false) // makes each person's relation to the business
	m0, u0 := keyMemory(t, g, quiet(t, g.rdb)), usedMemory(t, g)
	send("baseline", false)
	m1, u1 := keyMemory(t, g, quiet(t, g.rdb)), usedMemory(t, g)
	send("spring", true)
	after := quiet(t, g.rdb)
	m2, u2 := keyMemory(t, g, after), usedMemory(t, g)

	bodies := 0
	for k := range after {
		if strings.HasPrefix(k, "hr:{m:") {
			bodies++
		}
	}
	if bodies != 1 {
		t.Fatalf("%d body keys, want 1", bodies)
	}
	content, bookkeeping := (m2-m1)-(m1-m0), m1-m0
	bound := 4096 + int64(float64(wrapBytes)*1.5)
	t.Logf("broadcast of a %d-byte sealed body to %d devices (wraps %d bytes each):", len(sealed.Body), n, wrapBytes/n)
	t.Logf("  whole message, MEMORY USAGE: %d bytes (used_memory: %d); of which per-message bookkeeping %d (used_memory: %d)",
		m2-m1, u2-u1, bookkeeping, u1-u0)
	t.Logf("  content (body once + wraps): %d bytes; bound 4 KiB + 1.5 x %d = %d; %.2f of the bound", content, wrapBytes, bound,
		float64(content)/float64(bound))
	if content > bound {
		t.Fatalf("the broadcast's content took %d bytes, over the bound of %d", content, bound)
	}
}

// keyMemory sums MEMORY USAGE over every key.
func keyMemory(t *testing.T, g *gateway, snap map[string]string) int64 {
	t.Helper()
	var sum int64
	for k := range snap {
		n, err := g.rdb.MemoryUsage(context.Background(), k, 0).Result()
		if err == nil {
			sum += n
		}
	}
	return sum
}

func usedMemory(t *testing.T, g *gateway) int64 {
	t.Helper()
	info, err := g.rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatal("no used_memory in INFO")
	return 0
}

// TestReportsStepLimitsDown: reports past the threshold step the business's
// new-recipient tier down once, and GetBusiness shows the figure.
func TestReportsStepLimitsDown(t *testing.T) {
	t.Parallel()
	g := startGateway(t, func(c *Config) {
		c.Quality = business.QualityPolicy{Threshold: 0.3, Window: time.Hour, MinDelivered: 3, Bucket: time.Second}
	})
	biz, key := g.newBusiness("Spammy")
	g.setLimits(biz, 100, 100, 10_000)
	phone := g.register(alice)
	var ids []string
	for i := range 4 {
		ids = append(ids, g.send(key, msg(alice, tx, rcpt, fmt.Sprint("m", i), "x", phone)).MessageId)
	}
	if _, err := g.recipient.Ack(as(phone.token), &heraldv1.AckRequest{MessageIds: ids}); err != nil {
		t.Fatal(err)
	}
	quality := func() *heraldv1.Business {
		t.Helper()
		r, err := g.admin.GetBusiness(g.adminCtx(), &heraldv1.GetBusinessRequest{BusinessId: biz})
		if err != nil {
			t.Fatal(err)
		}
		return r.Business
	}
	for deadline := time.Now().Add(10 * time.Second); quality().Quality.Delivered < 4; {
		if time.Now().After(deadline) {
			t.Fatalf("delivered count = %d, want 4", quality().Quality.Delivered)
		}
		time.Sleep(50 * time.Millisecond)
	}
	report := func(id string) {
		t.Helper()
		if _, err := g.recipient.ReportSpam(as(phone.token), &heraldv1.ReportSpamRequest{MessageId: id,
			Reason: heraldv1.ReportReason_REPORT_REASON_MISLABELED_CATEGORY}); err != nil {
			t.Fatal(err)
		}
	}
	report(ids[0])
	report(ids[0]) // counted once
	if b := quality(); b.Quality.Reports != 1 || b.Limits.DailyUniqueRecipients != 10_000 {
		t.Fatalf("after one report: %v", b)
	}
	report(ids[1])
	b := quality()
	if b.Quality.Reports != 2 || b.Quality.ReportRate != 0.5 || b.Limits.DailyUniqueRecipients != 1_000 || b.Quality.LastStepDownTime == nil {
		t.Fatalf("after crossing the threshold: %v; want the 1,000 tier", b)
	}
	report(ids[2])
	if b := quality(); b.Limits.DailyUniqueRecipients != 1_000 || b.Limits.MessagesPerSecond != 100 {
		t.Fatalf("stepped down twice in one window: %v", b)
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestCanary seals a marker end to end, sends it, delivers and acks it, and then
// looks for the marker (and the phone number) in every Redis key and value, and for
// them, the tokens and the sealed message in everything the gateway logged at debug
// level, its domain packages' lines included.
func TestCanary(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	g := startGateway(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	biz, key := g.newBusiness("Acme")
	signer, _ := e2e.GenerateSigningKey()
	if _, err := g.messaging.SetSigningKey(as(key), &heraldv1.SetSigningKeyRequest{PublicKey: signer.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	phone, pk := g.registerKey(alice, e2e.MLKEM768X25519)
	const marker = "CANARY-7f3a9c-plaintext-marker"
	h := e2e.Header{BusinessID: biz, Category: e2e.Transactional, Kind: e2e.Receipt, ClientMessageID: "canary-1", SentTime: time.Now()}
	sealed, err := e2e.Seal(signer, h, []byte(marker), []e2e.Recipient{{DeviceID: phone.id, PublicKey: pk.PublicKey(), Algorithm: e2e.MLKEM768X25519}})
	if err != nil {
		t.Fatal(err)
	}
	r := g.send(key, &heraldv1.Message{Recipient: alice, Category: tx, Kind: rcpt, ClientMessageId: "canary-1", Body: sealed.Body,
		Envelopes: []*heraldv1.Envelope{{DeviceId: phone.id, Ciphertext: sealed.Wraps[phone.id], KeyId: pk.KeyID()}}})
	if r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatal(r)
	}
	d := g.receive(phone).next()
	if !bytes.Equal(d.BusinessSigningKey, signer.PublicKey()) {
		t.Fatal("the delivery does not carry the business's signing key")
	}
	m, err := e2e.Open(pk, phone.id, e2e.Header{BusinessID: d.BusinessId, Category: e2e.Category(d.Category), Kind: e2e.Kind(d.Kind),
		ClientMessageID: d.ClientMessageId}, d.BusinessSigningKey, e2e.JoinEnvelope(d.Body, d.Ciphertext))
	if err != nil || string(m.Body) != marker {
		t.Fatalf("open = %v, %v", m, err)
	}
	if _, err := g.recipient.Ack(as(phone.token), &heraldv1.AckRequest{MessageIds: []string{d.MessageId}, Read: true}); err != nil {
		t.Fatal(err)
	}
	snap := quiet(t, g.rdb)
	for k, v := range snap {
		for _, secret := range []string{marker, alice, strings.TrimPrefix(alice, "+")} {
			if strings.Contains(k, secret) || strings.Contains(v, secret) {
				t.Errorf("Redis key %s holds %q", k, secret)
			}
		}
	}
	// Background work logs too (package delivery's forwarder): stop the gateway, so
	// that every line it will write is written.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.srv.Shutdown(ctx)
	out := logs.String()
	if !strings.Contains(out, "level=DEBUG") {
		t.Fatal("nothing was logged at debug level: the check below would prove nothing")
	}
	if !strings.Contains(out, "component=delivery") {
		t.Fatal("nothing was logged by package delivery: its lines would go unchecked")
	}
	secrets := []string{marker, alice, strings.TrimPrefix(alice, "+"), phone.token, key}
	for _, b := range [][]byte{sealed.Body, sealed.Wraps[phone.id]} {
		secrets = append(secrets, renderings(b)...)
	}
	for _, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Errorf("the gateway's debug log holds %.48q", secret)
		}
	}
}

// renderings are the ways a log line would show b: as a text or JSON handler writes
// a []byte attribute (quoted, base64), as %v writes it inside a struct, and as hex.
func renderings(b []byte) []string {
	return []string{strings.Trim(strconv.Quote(string(b)), `"`), base64.StdEncoding.EncodeToString(b),
		strings.Trim(fmt.Sprint(b), "[]"), hex.EncodeToString(b)}
}
