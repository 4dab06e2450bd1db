package admission

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// The quota admits, in order, the messages that fit; a duplicate and a refusal
// charge nothing; and a body counts once per call, however many messages name it.
func TestQuotaAdmitsWhatFits(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	c := &clock{now: time.UnixMilli(1_800_000_000_000)}
	lim := limitsOf{PerSecond: 1e6, Burst: 1e6}
	body := make([]byte, 1000)
	one := int64(messageOverhead + 100 + envelopeOverhead) // a message with an envelope of 100 bytes
	a := New(rs.Client, blocklist.New(rs.Client, blocklist.Caps{NewWindow: window}), lim, WithClock(c.Now),
		WithPendingQuota(3*one+int64(len(body))))
	t.Cleanup(a.Close)
	f := &fixture{t: t, rs: rs, rdb: rs.Client, clock: c, a: a}
	m := func(i int, id string) Message {
		msg := f.person(i)
		msg.ClientMessageID = id
		msg.Envelopes[0].Ciphertext = make([]byte, 100)
		msg.Body = body
		return msg
	}
	// Two messages with one body: the body counts once. A third fits, a fourth does not.
	if got := outcomes(f.admit(m(1, "a"), m(2, "a"), m(3, "a"), m(4, "a"))); got != "accepted accepted accepted quota_exceeded" {
		t.Fatalf("outcomes %q", got)
	}
	// A duplicate is answered with the first message (the quota has no room for a new
	// one, but a retry must learn what was admitted) and charged nothing more; a new
	// message does not fit, and its body is not stored.
	other := m(5, "b")
	other.Body = []byte("a body of its own")
	if got := outcomes(f.admit(m(1, "a"), other)); got != "accepted quota_exceeded" {
		t.Fatalf("a duplicate and a new message: %q", got)
	}
	if n := len(rs.Client.Keys(context.Background(), keys.Body("*")).Val()); n != 1 {
		t.Fatalf("%d bodies stored, want 1: a message refused for the quota stores nothing", n)
	}
	// The admitted messages carry their size, for their events and their settling: the
	// body shared among the three that brought it.
	var total int64
	for i := 1; i <= 3; i++ {
		total += pendingOf(t, rs.Client, m(i, "a").UID, "a")
	}
	if total != 3*one+int64(len(body)) {
		t.Fatalf("the three messages count %d bytes, want %d", total, 3*one+int64(len(body)))
	}
}

// pendingOf is the size the message uid was sent under client id cm counts.
func pendingOf(t *testing.T, rdb *redis.Client, uid, cm string) int64 {
	t.Helper()
	u := keys.Recipient(uid)
	msg, err := keys.ParseMessage(rdb.HGetAll(context.Background(), u.Message(rdb.Get(context.Background(),
		u.Idempotency(biz, cm)).Val())).Val())
	if err != nil {
		t.Fatal(err)
	}
	return msg.PendingBytes
}

// TestQuotaHoldsConcurrentCalls: calls admitting at the same time on one gateway each
// see what the others charged, so together they stay within the quota.
func TestQuotaHoldsConcurrentCalls(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	c := &clock{now: time.UnixMilli(1_800_000_000_000)}
	one := int64(messageOverhead + len("sealed") + envelopeOverhead)
	a := New(rs.Client, blocklist.New(rs.Client, blocklist.Caps{NewWindow: window}), limitsOf{PerSecond: 1e6, Burst: 1e6},
		WithClock(c.Now), WithPendingQuota(3*one))
	t.Cleanup(a.Close)
	f := &fixture{t: t, rs: rs, rdb: rs.Client, clock: c, a: a}
	const callers = 20
	ms := make([]Message, callers)
	for i := range ms {
		ms[i] = f.person(i)
	}
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for i := range callers {
		wg.Go(func() {
			ds, err := a.Admit(context.Background(), biz, []Message{ms[i]})
			if err != nil {
				t.Error(err)
				return
			}
			if ds[0].Outcome == blocklist.Accepted {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d of %d concurrent messages accepted under a quota of 3", n, callers)
	}
}

// TestQuotaCountsABodyWhoseFirstMessageIsRefused: a body a call stores is shared
// among its messages, so a refused first message takes only its own share out of the
// count, not the body; and what a refused message reserved is given back.
func TestQuotaCountsABodyWhoseFirstMessageIsRefused(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	c := &clock{now: time.UnixMilli(1_800_000_000_000)}
	a := New(rs.Client, blocklist.New(rs.Client, blocklist.Caps{NewWindow: window}), limitsOf{PerSecond: 1e6, Burst: 1e6},
		WithClock(c.Now), WithPendingQuota(1<<20))
	t.Cleanup(a.Close)
	f := &fixture{t: t, rs: rs, rdb: rs.Client, clock: c, a: a}
	body := make([]byte, 100_000)
	blocked, other := f.person(1), f.person(2)
	blocked.Body, other.Body = body, body
	if err := blocklist.New(rs.Client, blocklist.Caps{}).Block(context.Background(), blocked.UID, biz, c.Now()); err != nil {
		t.Fatal(err)
	}
	if got := outcomes(f.admit(blocked, other)); got != "blocked accepted" {
		t.Fatalf("outcomes %q", got)
	}
	one := int64(messageOverhead + len("sealed") + envelopeOverhead)
	if got := pendingOf(t, rs.Client, other.UID, other.ClientMessageID); got != one+int64(len(body))/2 {
		t.Fatalf("the accepted message counts %d bytes, want %d: itself and half the body", got, one+int64(len(body))/2)
	}
	// The blocked message's reservation went back: what is still charged here is the
	// accepted message's size alone.
	if seen := a.quota.reserve(biz, 0, c.Now(), c.Now(), nil); seen != one+int64(len(body))/2 {
		t.Fatalf("the gateway still charges %d bytes, want %d", seen, one+int64(len(body))/2)
	}
}

// The view adds what the gateway admitted to the count Redis gave, from forwardLag
// before that count was read, and forgets it once no count can be that old.
func TestQuotaViewAddsWhatTheCountMayMiss(t *testing.T) {
	t.Parallel()
	q := &pendingQuota{limit: 1 << 20, recent: map[string][]charge{}}
	t0 := time.UnixMilli(1_800_000_000_000)
	q.add(biz, t0, 100)
	q.add(biz, t0.Add(50*time.Millisecond), 10) // the same bucket
	q.add(biz, t0.Add(3*time.Second), 1000)
	for _, tc := range []struct {
		name        string
		read, now   time.Time
		counted     int64
		want        int64
		description string
	}{
		{"a count read before all of it", t0, t0.Add(3 * time.Second), 5, 1115, "all three charges"},
		{"a count read well after the first charges", t0.Add(forwardLag + time.Second), t0.Add(forwardLag + time.Second), 500, 1500,
			"the count has the first two; the third may be missing"},
		{"a count read long after every charge", t0.Add(3*time.Second + forwardLag + chargeBucket + time.Millisecond), t0.Add(9 * time.Second), 1110, 1110,
			"the count has all of them"},
	} {
		if got := q.reserve(biz, tc.counted, tc.read, tc.now, nil); got != tc.want {
			t.Errorf("%s: view %d, want %d (%s)", tc.name, got, tc.want, tc.description)
		}
	}
	if q.reserve(biz, 0, t0.Add(time.Hour), t0.Add(time.Hour), nil); len(q.recent) != 0 {
		t.Fatalf("charges older than any count are still kept: %v", q.recent)
	}
}
