package admission

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
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
	// The admitted messages carry their size, for their events and their settling.
	msg, err := keys.ParseMessage(rs.Client.HGetAll(context.Background(), keys.Recipient(m(1, "a").UID).Message(
		rs.Client.Get(context.Background(), keys.Recipient(m(1, "a").UID).Idempotency(biz, "a")).Val())).Val())
	if err != nil || msg.PendingBytes != one+int64(len(body)) {
		t.Fatalf("the first message counts %d bytes (%v), want %d", msg.PendingBytes, err, one+int64(len(body)))
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
		if got := q.view(biz, tc.counted, tc.read, tc.now); got != tc.want {
			t.Errorf("%s: view %d, want %d (%s)", tc.name, got, tc.want, tc.description)
		}
	}
	if q.view(biz, 0, t0.Add(time.Hour), t0.Add(time.Hour)); len(q.recent) != 0 {
		t.Fatalf("charges older than any count are still kept: %v", q.recent)
	}
}
