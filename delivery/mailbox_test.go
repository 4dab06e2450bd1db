package delivery

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/redis/go-redis/v9"
)

// page is one fetch from the start of p's mailbox, or after cursor.
func (f *fixture) page(p Principal, cursor string) ([]Delivery, string) {
	f.t.Helper()
	after := "-inf"
	if cursor != "" {
		after = "(" + cursor
	}
	ds, _, last, _, _, err := f.svc.Mailboxes().fetch(f.ctx, p, "test", after, "")
	if err != nil {
		f.t.Fatal(err)
	}
	return ds, last
}

func ids(ds []Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.MessageID
	}
	return out
}

// TestFetchInOrder: a device reads its own envelope of each queued message, oldest
// first, with what the business said about it.
func TestFetchInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	uid := recipient(0)
	phone, laptop := f.device(uid), f.device(uid)
	sent := f.clock.Now()
	var want []string
	for range 3 {
		want = append(want, f.send(time.Hour, phone, laptop))
		f.clock.Add(time.Second)
	}
	for _, p := range []Principal{phone, laptop} {
		ds, _ := f.page(p, "")
		if !slices.Equal(ids(ds), want) {
			t.Fatalf("device %s fetched %v, want %v", p.DeviceID, ids(ds), want)
		}
		d := ds[0]
		if d.Business != biz || d.Category != "t" || d.Kind != "receipt" || d.ClientMessageID == "" ||
			d.Sent.UnixMilli() != sent.UnixMilli() || d.Expires.UnixMilli() != sent.Add(time.Hour).UnixMilli() {
			t.Fatalf("delivery = %+v", d)
		}
		for _, d := range ds {
			if !bytes.Equal(d.Ciphertext, ciphertext(d.MessageID, p)) {
				t.Fatalf("device %s got ciphertext %q for %s", p.DeviceID, d.Ciphertext, d.MessageID)
			}
		}
	}
}

// TestFetchLimit: one fetch returns at most fetchLimit deliveries, and the next one
// continues after the last.
func TestFetchLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	phone := f.device(recipient(0))
	var want []string
	for range fetchLimit + 1 {
		want = append(want, f.send(time.Hour, phone))
	}
	first, cursor := f.page(phone, "")
	if !slices.Equal(ids(first), want[:fetchLimit]) || cursor == "" {
		t.Fatalf("first page: %d deliveries, cursor %q; want the first %d", len(first), cursor, fetchLimit)
	}
	second, cursor := f.page(phone, cursor)
	if !slices.Equal(ids(second), want[fetchLimit:]) {
		t.Fatalf("second page = %v, want %v", ids(second), want[fetchLimit:])
	}
	if third, last := f.page(phone, cursor); len(third) != 0 || last != "" {
		t.Fatalf("after the last page: %v, cursor %q", ids(third), last)
	}
}

// TestFetchDropsExpired: a message past its expiry is not delivered; the fetch
// reports it expired on the fetching device, once, and leaves the other devices'
// reports to their own fetches.
func TestFetchDropsExpired(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	uid := recipient(0)
	phone, laptop := f.device(uid), f.device(uid)
	short := f.send(time.Minute, phone, laptop)
	long := f.send(time.Hour, phone, laptop)
	f.events() // the ACCEPTED events
	f.clock.Add(2 * time.Minute)

	for range 2 {
		if ds, _ := f.page(phone, ""); !slices.Equal(ids(ds), []string{long}) {
			t.Fatalf("fetched %v, want only %s", ids(ds), long)
		}
	}
	if got, want := f.events(), []status{{StatusExpired, short, phone.DeviceID}}; !slices.Equal(got, want) {
		t.Fatalf("after the phone's fetches: %v, want %v", got, want)
	}
	if ds, _ := f.page(laptop, ""); !slices.Equal(ids(ds), []string{long}) {
		t.Fatalf("the laptop fetched %v, want only %s", ids(ds), long)
	}
	if got, want := f.events(), []status{{StatusExpired, short, laptop.DeviceID}}; !slices.Equal(got, want) {
		t.Fatalf("after the laptop's fetch: %v, want %v", got, want)
	}
}

// TestStream: Stream sends what is queued, then what is admitted while it waits,
// woken by the admission's notification rather than by polling, and ends without
// error when its context does.
func TestStream(t *testing.T) {
	t.Parallel()
	f := newFixture(t, WithPollInterval(time.Hour))
	phone := f.device(recipient(0))
	queued := f.send(time.Hour, phone)

	ctx, cancel := context.WithCancel(f.ctx)
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- f.svc.Mailboxes().Stream(ctx, phone, func(d Delivery) error {
			got <- d.MessageID
			return nil
		}, ignoreNotices)
	}()
	next := func() string {
		t.Helper()
		select {
		case id := <-got:
			return id
		case err := <-done:
			t.Fatalf("Stream ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("nothing streamed within 10s")
		}
		return ""
	}
	if id := next(); id != queued {
		t.Fatalf("streamed %s, want the queued %s", id, queued)
	}
	f.waitSubscribed(keys.Recipient(phone.UID).Channel())
	for range 2 {
		want := f.send(time.Hour, phone)
		if id := next(); id != want {
			t.Fatalf("streamed %s, want the new %s", id, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Stream returned %v when its context ended", err)
	}
}

// waitSubscribed waits until the hub has subscribed to channel: a notification
// published before that reaches nobody.
func (f *fixture) waitSubscribed(channel string) {
	f.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		n, err := f.rdb.PubSubNumSub(f.ctx, channel).Result()
		if err != nil {
			f.t.Fatal(err)
		}
		if n[channel] > 0 {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("nothing subscribed to %s within 10s", channel)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAck: each state change of a message on a device (queued -> delivered -> read)
// happens once and reports one status event; a repeated ack changes nothing, and an
// acked message leaves the mailbox.
func TestAck(t *testing.T) {
	t.Parallel()
	const (
		delivered = false
		read      = true
	)
	for _, tc := range []struct {
		name string
		acks []bool
		want []string // status letters the acks report, in order
	}{
		{"delivered", []bool{delivered}, []string{StatusDelivered}},
		{"read at once", []bool{read}, []string{StatusDelivered, StatusRead}},
		{"delivered, then read", []bool{delivered, read}, []string{StatusDelivered, StatusRead}},
		{"delivered twice", []bool{delivered, delivered}, []string{StatusDelivered}},
		{"read twice", []bool{read, read}, []string{StatusDelivered, StatusRead}},
		{"read, then delivered", []bool{read, delivered}, []string{StatusDelivered, StatusRead}},
		{"delivered, read, delivered, read", []bool{delivered, read, delivered, read}, []string{StatusDelivered, StatusRead}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			uid := recipient(0)
			phone, laptop := f.device(uid), f.device(uid)
			id := f.send(time.Hour, phone, laptop)
			f.events() // ACCEPTED
			for i, r := range tc.acks {
				unknown, err := f.svc.Mailboxes().Ack(f.ctx, phone, []string{id}, r)
				if err != nil || len(unknown) != 0 {
					t.Fatalf("ack %d = %v, %v", i+1, unknown, err)
				}
			}
			var want []status
			for _, s := range tc.want {
				want = append(want, status{s, id, phone.DeviceID})
			}
			if got := f.events(); !slices.Equal(got, want) {
				t.Fatalf("reported %v, want %v", got, want)
			}
			if ds, _ := f.page(phone, ""); len(ds) != 0 {
				t.Fatalf("the phone still fetches %v", ids(ds))
			}
			// The other device's copy is its own.
			if ds, _ := f.page(laptop, ""); !slices.Equal(ids(ds), []string{id}) {
				t.Fatalf("the laptop fetches %v, want %s", ids(ds), id)
			}
		})
	}
}

// TestAckUnknown: an ack of anything that is not a queued or received delivery to
// the acking device returns the id as unknown, and reports nothing but an expiry,
// once.
func TestAckUnknown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// setup returns the id to ack and the device that acks it; it may move the
		// clock.
		setup func(f *fixture, phone Principal) (string, Principal)
		want  []string // status letters the acks report
	}{
		{"never admitted", func(f *fixture, p Principal) (string, Principal) { return p.UID + ".m999999", p }, nil},
		{"not an id", func(_ *fixture, p Principal) (string, Principal) { return "", p }, nil},
		{"another recipient's message", func(f *fixture, p Principal) (string, Principal) {
			return f.send(time.Hour, f.device(recipient(1))), p
		}, nil},
		{"sent before the device registered", func(f *fixture, p Principal) (string, Principal) {
			id := f.send(time.Hour, p)
			return id, f.device(p.UID)
		}, nil},
		{"expired", func(f *fixture, p Principal) (string, Principal) {
			id := f.send(time.Minute, p)
			f.clock.Add(2 * time.Minute)
			return id, p
		}, []string{StatusExpired}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			id, acker := tc.setup(f, f.device(recipient(0)))
			f.events() // ACCEPTED
			for _, r := range []bool{false, true, false} {
				unknown, err := f.svc.Mailboxes().Ack(f.ctx, acker, []string{id}, r)
				if err != nil || !slices.Equal(unknown, []string{id}) {
					t.Fatalf("ack(read=%v) = %v, %v; want %q unknown", r, unknown, err, id)
				}
			}
			var want []status
			for _, s := range tc.want {
				want = append(want, status{s, id, acker.DeviceID})
			}
			if got := f.events(); !slices.Equal(got, want) {
				t.Fatalf("reported %v, want %v", got, want)
			}
		})
	}
}

// TestAckMany: one ack names several messages; the unknown ones are returned, the
// others acknowledged.
func TestAckMany(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	phone := f.device(recipient(0))
	a, b := f.send(time.Hour, phone), f.send(time.Hour, phone)
	f.events()
	ghost := phone.UID + ".m999999"
	unknown, err := f.svc.Mailboxes().Ack(f.ctx, phone, []string{a, ghost, b, a}, false)
	if err != nil || !slices.Equal(unknown, []string{ghost}) {
		t.Fatalf("ack = %v, %v; want %s unknown", unknown, err, ghost)
	}
	want := []status{{StatusDelivered, a, phone.DeviceID}, {StatusDelivered, b, phone.DeviceID}}
	if got := f.events(); !slices.Equal(got, want) {
		t.Fatalf("reported %v, want %v", got, want)
	}
}

// TestReport: a device reports a message delivered to it once; another device of the
// same person reports it on its own; a message that is not the device's is
// ErrNotDelivered.
func TestReport(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	uid := recipient(0)
	phone, laptop := f.device(uid), f.device(uid)
	id := f.send(time.Hour, phone, laptop)
	late := f.device(uid) // registered after the message was sent
	stranger := f.device(recipient(1))
	for i, tc := range []struct {
		device  Principal
		message string
		want    string
		err     error
	}{
		{phone, id, biz, nil},
		{phone, id, "", nil}, // already reported
		{laptop, id, biz, nil},
		{laptop, id, "", nil},
		{late, id, "", ErrNotDelivered},
		{stranger, id, "", ErrNotDelivered},
		{phone, uid + ".m999999", "", ErrNotDelivered},
	} {
		got, err := f.svc.Mailboxes().Report(f.ctx, tc.device, tc.message, "spam")
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("report %d = %q, %v; want %q, %v", i+1, got, err, tc.want, tc.err)
		}
	}
}

// TestStreamResyncsWhenRedisLostWrites: Redis comes back without its last writes (the
// sequence below is deleted, as a restart that lost it would), so messages admitted
// after sit below the position an open stream reached. The stream notices the
// sequence went backwards and delivers them without the device reconnecting.
func TestStreamResyncsWhenRedisLostWrites(t *testing.T) {
	t.Parallel()
	f := newFixture(t, WithPollInterval(time.Hour))
	phone := f.device(recipient(0))
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	got := make(chan string, 10)
	go f.svc.Mailboxes().Stream(ctx, phone, func(d Delivery) error { got <- d.MessageID; return nil }, ignoreNotices)
	next := func(what string) string {
		t.Helper()
		select {
		case id := <-got:
			return id
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing streamed within 10s", what)
		}
		return ""
	}
	f.waitSubscribed(keys.Recipient(phone.UID).Channel())
	var sent []string
	for range 3 {
		sent = append(sent, f.send(time.Hour, phone))
		if id := next("before the loss"); id != sent[len(sent)-1] {
			t.Fatalf("streamed %s, want %s", id, sent[len(sent)-1])
		}
	}

	// Lost with the last writes: the sequence, and the three messages, at once (one DEL
	// of both keys), as a restart loses them; a stream woken between two separate
	// deletions would rightly stream again the messages still queued.
	u := keys.Recipient(phone.UID)
	if err := f.rdb.Del(f.ctx, u.Sequence(), u.Mailbox(phone.DeviceID)).Err(); err != nil {
		t.Fatal(err)
	}
	after := f.send(time.Hour, phone) // admitted at sequence 1, below the stream's 3
	if id := next("after the loss"); id != after {
		t.Fatalf("streamed %s after Redis lost writes, want the message admitted since, %s", id, after)
	}
}

func ignoreNotices(Notice) error { return nil }

// TestOneFetchPerAnnouncement: a stream fetches once for each announced admission,
// not again after a fetch that came back short (the next admission announces itself).
func TestOneFetchPerAnnouncement(t *testing.T) {
	t.Parallel()
	f := newFixture(t, WithPollInterval(time.Hour))
	phone := f.device(recipient(0))
	own := redis.NewClient(&redis.Options{Addr: f.rs.Addr})
	t.Cleanup(func() { own.Close() })
	var fetches atomic.Int64
	own.AddHook(fetchCount{&fetches})
	svc := New(own, WithClock(f.clock.Now), WithPollInterval(time.Hour))
	t.Cleanup(func() { svc.Close() })
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	got := make(chan string, 10)
	go svc.Mailboxes().Stream(ctx, phone, func(d Delivery) error { got <- d.MessageID; return nil }, ignoreNotices)
	f.waitSubscribed(keys.Recipient(phone.UID).Channel())
	// The first fetch, of what was queued before, is done before anything is sent, so
	// that no admission races it.
	for deadline := time.Now().Add(10 * time.Second); fetches.Load() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stream never fetched")
		}
	}
	for i := range 5 {
		id := f.send(time.Hour, phone)
		select {
		case d := <-got:
			if d != id {
				t.Fatalf("delivery %d is %s, want %s", i, d, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery within 10 s")
		}
	}
	// One fetch at the start, then one per admission.
	if n := fetches.Load(); n != 6 {
		t.Fatalf("the stream fetched %d times for 5 deliveries, want 6", n)
	}
}

// fetchCount counts the fetches a client runs (fetch.lua, alone or in a pipeline),
// once each has run, so that a test can wait for one.
type fetchCount struct{ n *atomic.Int64 }

func (c fetchCount) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c fetchCount) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		c.count(cmd)
		return err
	}
}

func (c fetchCount) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return err
	}
}

// count counts cmd if it is a fetch that ran: an EVALSHA refused with NOSCRIPT ran
// nothing, and the EVAL sent after it counts.
func (c fetchCount) count(cmd redis.Cmder) {
	args := cmd.Args()
	if cmd.Err() != nil || len(args) < 2 {
		return
	}
	if name := cmd.Name(); name == "evalsha" && args[1] == fetchScript.Hash() || name == "eval" && args[1] == fetchScript.Source() {
		c.n.Add(1)
	}
}

type nopPusher struct{}

func (nopPusher) Wake(context.Context, string) error { return nil }

// TestLiveMarkOutlastsAnOverlappingStream: a device's live mark (what spares it a
// wake-up) is set by its open streams; when an old stream ends after a new one of the
// same device began (a reconnect), the mark stays, for the new one is open. Without
// a push service there is no mark at all.
func TestLiveMarkOutlastsAnOverlappingStream(t *testing.T) {
	t.Parallel()
	f := newFixture(t, WithPush(map[string]Pusher{keys.PushWeb: nopPusher{}}, time.Minute), WithPollInterval(time.Hour))
	phone := f.device(recipient(0))
	live := keys.Recipient(phone.UID).Live(phone.DeviceID)
	open := func() (context.CancelFunc, chan struct{}) {
		ctx, cancel := context.WithCancel(f.ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			f.svc.Mailboxes().Stream(ctx, phone, func(Delivery) error { return nil }, ignoreNotices)
		}()
		return cancel, done
	}
	waitMark := func(what string, ok func(v string, err error) bool) string {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			v, err := f.rdb.Get(f.ctx, live).Result()
			if ok(v, err) {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("waited 10 s for %s: %q, %v", what, v, err)
			}
		}
	}
	endOld, oldDone := open()
	oldMark := waitMark("the old stream's mark", func(v string, err error) bool { return err == nil })
	endNew, newDone := open()
	defer func() { endNew(); <-newDone }()
	waitMark("the new stream's mark", func(v string, err error) bool { return err == nil && v != oldMark })
	endOld()
	<-oldDone
	if n := f.rdb.Exists(f.ctx, live).Val(); n != 1 {
		t.Fatal("the old stream's end took the mark of the stream still open")
	}

	quiet := newFixture(t, WithPollInterval(time.Hour))
	tablet := quiet.device(recipient(1))
	ctx, cancel := context.WithCancel(quiet.ctx)
	got := make(chan string, 1)
	go quiet.svc.Mailboxes().Stream(ctx, tablet, func(d Delivery) error { got <- d.MessageID; return nil }, ignoreNotices)
	quiet.waitSubscribed(keys.Recipient(tablet.UID).Channel())
	id := quiet.send(time.Hour, tablet)
	select {
	case d := <-got:
		if d != id {
			t.Fatalf("streamed %s, want %s", d, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing streamed within 10 s")
	}
	if n := quiet.rdb.Exists(quiet.ctx, keys.Recipient(tablet.UID).Live(tablet.DeviceID)).Val(); n != 0 {
		t.Fatal("a live mark was written with no push service to read it")
	}
	cancel()
}
