package admission

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/business"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/relay"
	"github.com/redis/go-redis/v9"
)

const biz = "biz_a"

// limitsOf is a business store with fixed limits for every business.
type limitsOf business.Limits

func (l limitsOf) Limits(context.Context, string, time.Time) (business.Limits, error) {
	return business.Limits(l), nil
}

// PendingBytes: nothing counted in Redis; the Admitter's own count is all there is.
func (l limitsOf) PendingBytes(_ context.Context, _ string, now time.Time) (int64, time.Time, error) {
	return 0, now, nil
}

// clock is a test clock the Admitter and its limiter read.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	rs    *redistest.Server
	rdb   *redis.Client
	clock *clock
	a     *Admitter
	// admitted are the message ids the WithAdmitted hook saw.
	mu       sync.Mutex
	admitted []string
}

const window = time.Hour

func newFixture(t *testing.T, lim business.Limits) *fixture {
	t.Helper()
	rs := redistest.Start(t)
	f := &fixture{t: t, rs: rs, rdb: rs.Client, clock: &clock{now: time.UnixMilli(1_800_000_000_000)}}
	store := blocklist.New(rs.Client, blocklist.Caps{NewWindow: window})
	f.a = New(rs.Client, store, limitsOf(lim), WithClock(f.clock.Now), WithAdmitted(func(a blocklist.Admission) {
		f.mu.Lock()
		f.admitted = append(f.admitted, a.MessageID)
		f.mu.Unlock()
	}))
	t.Cleanup(f.a.Close)
	return f
}

// person registers a recipient with one device and returns a message to them.
func (f *fixture) person(i int) Message {
	f.t.Helper()
	uid := fmt.Sprintf("u%025d", i)
	if err := f.rdb.HSet(context.Background(), keys.Recipient(uid).Devices(), "d1", "2|AAAA|h|0|").Err(); err != nil {
		f.t.Fatal(err)
	}
	return Message{UID: uid, Category: blocklist.Transactional, Kind: "receipt", ClientMessageID: "c1",
		TTL: time.Hour, Envelopes: []blocklist.Envelope{{DeviceID: "d1", Ciphertext: []byte("sealed")}}}
}

func (f *fixture) admit(ms ...Message) []blocklist.Decision {
	f.t.Helper()
	ds, err := f.a.Admit(context.Background(), biz, ms)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(ds) != len(ms) {
		f.t.Fatalf("%d decisions for %d messages", len(ds), len(ms))
	}
	return ds
}

// units is how many units of the business's allowance Redis counts.
func (f *fixture) units() int64 {
	f.t.Helper()
	n, err := f.rdb.ZCard(context.Background(), keys.Business(biz).NewRecipients()).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func outcomes(ds []blocklist.Decision) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "%v ", d.Outcome)
	}
	return strings.TrimSpace(b.String())
}

func TestRateAdmitsAPrefixInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, business.Limits{PerSecond: 1, Burst: 2})
	ms := make([]Message, 5)
	for i := range ms {
		ms[i] = f.person(i)
	}
	ds := f.admit(ms...)
	if got, want := outcomes(ds), "accepted accepted rate_limited rate_limited rate_limited"; got != want {
		t.Fatalf("outcomes %q, want %q", got, want)
	}
	for _, d := range ds[2:] {
		if d.RetryAfter <= 0 || d.RetryAfter > time.Second {
			t.Fatalf("rate-limited RetryAfter %v, want within (0, 1s] at 1 msg/s", d.RetryAfter)
		}
	}
	if len(f.admitted) != 2 {
		t.Fatalf("admitted hook saw %d messages, want 2", len(f.admitted))
	}
}

// A batch of new people spends exactly the tier, in order; the rest wait for the
// oldest unit to leave the window, and a person already started costs nothing.
func TestNewRecipientAllowance(t *testing.T) {
	t.Parallel()
	f := newFixture(t, business.Limits{PerSecond: 1e6, Burst: 1e6, DailyUnique: 3})
	ms := make([]Message, 5)
	for i := range ms {
		ms[i] = f.person(i)
	}
	ds := f.admit(ms...)
	if got, want := outcomes(ds), "accepted accepted accepted new_recipient_limited new_recipient_limited"; got != want {
		t.Fatalf("outcomes %q, want %q", got, want)
	}
	for _, d := range ds[3:] {
		if d.RetryAfter != window {
			t.Fatalf("RetryAfter %v, want the whole window %v (every unit was leased just now)", d.RetryAfter, window)
		}
	}
	if n := f.units(); n != 3 {
		t.Fatalf("%d units counted, want 3", n)
	}

	// People already started go through without touching the allowance.
	again := ms[0]
	again.ClientMessageID = "c2"
	if ds := f.admit(again); ds[0].Outcome != blocklist.Accepted {
		t.Fatalf("a started person: %v", ds[0].Outcome)
	}
	if n := f.units(); n != 3 {
		t.Fatalf("%d units counted after a known person, want 3", n)
	}

	// 1 ms before the wait the tier is still full; at the wait a retry passes.
	f.clock.Add(window - time.Millisecond)
	if ds := f.admit(ms[3]); ds[0].Outcome != blocklist.NewRecipientLimited || ds[0].RetryAfter != time.Millisecond {
		t.Fatalf("1 ms early: %v after %v, want new_recipient_limited after 1ms", ds[0].Outcome, ds[0].RetryAfter)
	}
	f.clock.Add(time.Millisecond)
	if ds := f.admit(ms[3]); ds[0].Outcome != blocklist.Accepted {
		t.Fatalf("at the wait: %v", ds[0].Outcome)
	}
}

// A person new to the business counts against its allowance whatever the outcome, so
// an allowance cannot be used to probe numbers: an unknown number spends a unit too.
func TestUnknownNumbersSpendAllowance(t *testing.T) {
	t.Parallel()
	f := newFixture(t, business.Limits{PerSecond: 1e6, Burst: 1e6, DailyUnique: 1})
	nobody := Message{UID: fmt.Sprintf("n%025d", 1), Category: blocklist.Transactional, Kind: "receipt",
		ClientMessageID: "c1", TTL: time.Hour}
	if ds := f.admit(nobody); ds[0].Outcome != blocklist.UnknownRecipient || !ds[0].StartedNew {
		t.Fatalf("unknown number: %+v", ds[0])
	}
	if ds := f.admit(f.person(2)); ds[0].Outcome != blocklist.NewRecipientLimited {
		t.Fatalf("a registered person after the tier went on an unknown one: %v", ds[0].Outcome)
	}
}

// A unit leased for a person that another admission started in the meantime is not
// spent, and goes back at once.
func TestUnspentUnitsGoBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, business.Limits{PerSecond: 1e6, Burst: 1e6, DailyUnique: 5})
	m := f.person(1)
	// Start the person from another gateway (its own client, without the hook) just
	// as this one leases a unit for them.
	rdb2 := redis.NewClient(&redis.Options{Addr: f.rs.Addr})
	t.Cleanup(func() { rdb2.Close() })
	f.rdb.AddHook(onLease{once: &sync.Once{}, f: func() {
		other := m
		other.ClientMessageID = "other"
		gw := New(rdb2, blocklist.New(rdb2, blocklist.Caps{NewWindow: window}),
			limitsOf{PerSecond: 1e6, Burst: 1e6, DailyUnique: 5}, WithClock(f.clock.Now))
		defer gw.Close()
		if _, err := gw.Admit(context.Background(), biz, []Message{other}); err != nil {
			t.Error(err)
		}
	}})
	ds := f.admit(m)
	if ds[0].Outcome != blocklist.Accepted || ds[0].StartedNew {
		t.Fatalf("decision %+v, want accepted without starting the person (started meanwhile)", ds[0])
	}
	if n := f.units(); n != 1 {
		t.Fatalf("%d units counted, want 1: the other gateway's, spent; this one's went back unspent", n)
	}
}

// onLease runs f once, before the first allowance lease goes to Redis.
type onLease struct {
	f    func()
	once *sync.Once
}

func (h onLease) seen(cmd redis.Cmder) {
	if args := cmd.Args(); len(args) > 3 && args[3] == keys.Business(biz).NewRecipients() {
		h.once.Do(h.f)
	}
}

func (h onLease) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h onLease) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.seen(cmd)
		return next(ctx, cmd)
	}
}
func (h onLease) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.seen(c)
		}
		return next(ctx, cmds)
	}
}

// A lookup of a new person spends allowance like a message; beyond the tier it is
// refused and learns no devices; a person already looked up is free.
func TestLookupSpendsAllowance(t *testing.T) {
	t.Parallel()
	f := newFixture(t, business.Limits{PerSecond: 1e6, Burst: 1e6, DailyUnique: 1})
	a, b := f.person(1), f.person(2)
	ctx := context.Background()
	chk, err := f.a.Lookup(ctx, biz, a.UID, blocklist.Transactional)
	if err != nil || chk.Outcome != blocklist.Accepted || !chk.StartedNew || len(chk.Devices) != 1 {
		t.Fatalf("first lookup: %+v, %v", chk, err)
	}
	chk, err = f.a.Lookup(ctx, biz, b.UID, blocklist.Transactional)
	if err != nil || chk.Outcome != blocklist.NewRecipientLimited || chk.Devices != nil {
		t.Fatalf("lookup beyond the tier: %+v, %v", chk, err)
	}
	if ds := f.admit(a); ds[0].Outcome != blocklist.Accepted {
		t.Fatalf("a message to the person looked up: %v", ds[0].Outcome)
	}
	if n := f.units(); n != 1 {
		t.Fatalf("%d units counted, want 1", n)
	}
}

// Duplicates return the first result and append nothing again; they are followed up
// again with the first message's id and expiry, so that a retry after a failed call
// completes what that call could not.
func TestDuplicatesAreFollowedUpAsTheFirst(t *testing.T) {
	t.Parallel()
	f := newFixture(t, business.Limits{PerSecond: 1e6, Burst: 1e6, DailyUnique: 5})
	m := f.person(1)
	first := f.admit(m)[0]
	f.clock.Add(time.Minute)
	second := f.admit(m)[0]
	if first.Outcome != blocklist.Accepted || !second.Duplicate || second.MessageID != first.MessageID {
		t.Fatalf("first %+v, second %+v", first, second)
	}
	if want := f.clock.Now().Add(-time.Minute).Add(m.TTL); !second.Expires.Equal(want) {
		t.Fatalf("duplicate's expiry %v, want the first admission's %v", second.Expires, want)
	}
	if len(f.admitted) != 2 || f.admitted[0] != first.MessageID || f.admitted[1] != first.MessageID {
		t.Fatalf("admitted hook saw %v, want the first message id twice", f.admitted)
	}
}

// TestErrorAfterTheScriptsRanIsOutcomeUnknown: Redis runs an admission script and
// its connection breaks before the answer comes; the Redis client tries again (as
// heraldd's does, once) and cannot even connect. Admit's error must say that the
// outcome is unknown, not that nothing was admitted: the message is.
func TestErrorAfterTheScriptsRanIsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	lim := business.Limits{PerSecond: 1e6, Burst: 1e6}
	f := newFixture(t, lim)
	r := relay.Start(t, f.rs.Addr)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	a := New(rdb, blocklist.New(rdb, blocklist.Caps{NewWindow: window}), limitsOf(lim), WithClock(f.clock.Now))
	t.Cleanup(a.Close)
	ctx := context.Background()
	if _, err := a.Admit(ctx, biz, []Message{f.person(1)}); err != nil {
		t.Fatal(err) // scripts loaded, rate tokens leased: the next Admit only runs the script
	}

	m := f.person(2)
	r.Hold()
	errc := make(chan error, 1)
	go func() {
		_, err := a.Admit(ctx, biz, []Message{m})
		errc <- err
	}()
	idem := keys.Recipient(m.UID).Idempotency(biz, m.ClientMessageID)
	for deadline := time.Now().Add(10 * time.Second); f.rdb.Exists(ctx, idem).Val() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the admission script did not run")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.Close()
	if err := <-errc; !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Admit after the script ran: %v; want ErrOutcomeUnknown", err)
	}
}
