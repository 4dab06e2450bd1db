package delivery

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/e2e"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// The tests build state the way a gateway does: devices register through Devices,
// messages are admitted through blocklist.Store (the admission script is what fills
// mailboxes in production), and what the scripts report is read back through the
// forwarder and Statuses, as a business reads it. No test depends on how a value is
// laid out in Redis.

const biz = "biz_acme"

// fixture is a Service on a store of its own, on a clock that moves only when told.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	rs    *redistest.Server
	rdb   *redis.Client
	clock *clock
	svc   *Service
	admit *blocklist.Store

	mu     sync.Mutex
	uids   []string             // recipients with devices: whose outboxes to forward
	first  map[string]Principal // each recipient's first device, which approves the others
	cursor string               // the last status event events returned
	read   int64                // how many events it returned in all
	seq    int
}

func newFixture(t *testing.T, opts ...Option) *fixture {
	t.Helper()
	rs := redistest.Start(t)
	f := &fixture{t: t, ctx: context.Background(), rs: rs, rdb: rs.Client, clock: &clock{now: time.Now()},
		admit: blocklist.New(rs.Client, blocklist.Caps{}), first: map[string]Principal{}}
	f.svc = f.service(opts...)
	return f
}

// service is another Service on the fixture's store and clock, as a second gateway
// would run.
func (f *fixture) service(opts ...Option) *Service {
	f.t.Helper()
	s := New(f.rdb, append([]Option{WithClock(f.clock.Now)}, opts...)...)
	f.t.Cleanup(func() { s.Close() })
	return s
}

// recipient returns the uid of the nth test recipient.
func recipient(n int) string {
	return keys.UID([]byte("test-secret-0123456789"), fmt.Sprintf("+1415555%04d", n))
}

// device registers a device for uid; a later device of uid is approved by the first,
// as the person would.
func (f *fixture) device(uid string) Principal {
	f.t.Helper()
	code, _, err := f.svc.Devices().IssueCode(f.ctx, uid, f.clock.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	pub := publicKey()
	reg, err := f.svc.Devices().Register(f.ctx, uid, code, pub, 2, f.clock.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	// As if the number's verification window had passed: tests register more devices
	// to one number than it may ask codes for in one (CodeIssues).
	f.rdb.Del(f.ctx, keys.Recipient(uid).VerifyCounts())
	f.mu.Lock()
	first, ok := f.first[uid]
	if !ok {
		f.first[uid] = Principal{UID: uid, DeviceID: reg.DeviceID}
		f.uids = append(f.uids, uid)
	}
	f.mu.Unlock()
	if reg.Pending != ok {
		f.t.Fatalf("device %d of the number: pending = %v", len(f.first), reg.Pending)
	}
	if reg.Pending {
		if err := f.svc.Devices().Approve(f.ctx, first, reg.DeviceID, e2e.KeyID(pub), f.clock.Now()); err != nil {
			f.t.Fatal(err)
		}
	}
	p, err := f.svc.Devices().Authenticate(f.ctx, reg.Token, f.clock.Now())
	if err != nil || p != (Principal{UID: uid, DeviceID: reg.DeviceID}) {
		f.t.Fatalf("the new device's token authenticates as %v, %v", p, err)
	}
	return p
}

// publicKey is a fresh X25519 public key.
func publicKey() []byte {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k.PublicKey().Bytes()
}

// send admits a message from biz that expires after ttl, sealed for devs (every
// device of their recipient, or admission refuses it as stale), and returns its id.
// Each device's ciphertext is ciphertext(id, device).
func (f *fixture) send(ttl time.Duration, devs ...Principal) string {
	f.t.Helper()
	f.mu.Lock()
	f.seq++
	n := f.seq
	f.mu.Unlock()
	uid := devs[0].UID
	now := f.clock.Now()
	id := keys.NewMessageID(uid, now)
	a := blocklist.Admission{UID: uid, Business: biz, Category: blocklist.Transactional, Kind: "receipt",
		ClientMessageID: fmt.Sprint("c", n), MessageID: id, Now: now, Expires: now.Add(ttl)}
	for _, d := range devs {
		a.Envelopes = append(a.Envelopes, blocklist.Envelope{DeviceID: d.DeviceID, Ciphertext: ciphertext(id, d)})
	}
	ds, err := f.admit.Admit(f.ctx, []blocklist.Admission{a})
	if err != nil {
		f.t.Fatal(err)
	}
	if ds[0].Outcome != blocklist.Accepted {
		f.t.Fatalf("admission: %+v", ds[0])
	}
	return id
}

func ciphertext(id string, d Principal) []byte { return []byte("sealed " + id + " for " + d.DeviceID) }

// status is what a status event says, without where and when.
type status struct{ Status, MessageID, DeviceID string }

func (s status) String() string { return s.Status + " " + s.MessageID + " " + s.DeviceID }

// events forwards every status event the scripts queued in the recipients' outboxes,
// and returns those the business's stream gained since the last call, oldest first,
// read through Statuses as a business reads them.
func (f *fixture) events() []status {
	f.t.Helper()
	f.mu.Lock()
	uids := slices.Clone(f.uids)
	f.mu.Unlock()
	if err := f.svc.forwarder.flush(f.ctx, uids); err != nil {
		f.t.Fatal(err)
	}
	for _, u := range uids {
		if n := f.rdb.LLen(f.ctx, keys.Recipient(u).Outbox()).Val(); n != 0 {
			f.t.Fatalf("%d status events were left in an outbox", n)
		}
	}
	total, err := f.rdb.XLen(f.ctx, keys.Business(biz).Statuses()).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	if f.read == total {
		return nil
	}
	var out []status
	errEnough := errors.New("read them all")
	err = f.svc.Statuses().Stream(f.ctx, biz, f.cursor, func(e Event) error {
		f.cursor = e.Cursor
		f.read++
		out = append(out, status{e.Status, e.MessageID, e.DeviceID})
		if f.read == total {
			return errEnough
		}
		return nil
	})
	if !errors.Is(err, errEnough) {
		f.t.Fatalf("reading statuses: %v", err)
	}
	return out
}

// clock is a test clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

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

// TestRunDrainsOnShutdown: Run, stopped, still forwards the status events and writes
// the expiry index entries that were pending when it was told to stop, before it
// returns: a graceful shutdown leaves nothing behind.
func TestRunDrainsOnShutdown(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	phone := f.device(recipient(0))
	id := f.send(time.Hour, phone)
	if _, err := f.svc.Mailboxes().Ack(f.ctx, phone, []string{id}, true); err != nil {
		t.Fatal(err)
	}
	f.svc.Forwarder().Kick(phone.UID)
	f.svc.Expiries().Track(id, f.clock.Now().Add(time.Hour))
	stopped, stop := context.WithCancel(f.ctx)
	stop()
	f.svc.Run(stopped)
	if n := f.rdb.LLen(f.ctx, keys.Recipient(phone.UID).Outbox()).Val(); n != 0 {
		t.Fatalf("%d status events were left in the outbox", n)
	}
	if n := f.rdb.XLen(f.ctx, keys.Business(biz).Statuses()).Val(); n != 3 {
		t.Fatalf("the business's stream holds %d events, want ACCEPTED, DELIVERED and READ", n)
	}
	if n := f.indexed(); n != 1 {
		t.Fatalf("the expiry index holds %d messages, want 1", n)
	}
}

// TestRunForwards: while Run runs, status events reach the business without anyone
// flushing, and a business's waiting Stream is woken for them.
func TestRunForwards(t *testing.T) {
	t.Parallel()
	f := newFixture(t, WithPollInterval(time.Hour))
	phone := f.device(recipient(0))
	ctx, cancel := context.WithCancel(f.ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { f.svc.Run(ctx) })
	got := make(chan Event, 10)
	wg.Go(func() { f.svc.Statuses().Stream(ctx, biz, "", func(e Event) error { got <- e; return nil }) })
	f.waitSubscribed(keys.Business(biz).Channel())
	id := f.send(time.Hour, phone)
	f.svc.Forwarder().Kick(phone.UID) // as the gateway that admitted it does
	if _, err := f.svc.Mailboxes().Ack(f.ctx, phone, []string{id}, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []status{{StatusAccepted, id, ""}, {StatusDelivered, id, phone.DeviceID}} {
		select {
		case e := <-got:
			if s := (status{e.Status, e.MessageID, e.DeviceID}); s != want {
				t.Fatalf("streamed %v, want %v", s, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v was not streamed within 10s", want)
		}
	}
}
