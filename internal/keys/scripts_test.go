package keys_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	adm "github.com/heraldhq/herald/admission"
	"github.com/heraldhq/herald/blocklist"
	"github.com/heraldhq/herald/business"
	"github.com/heraldhq/herald/delivery"
	"github.com/heraldhq/herald/e2e"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/ratelimit"
	"github.com/redis/go-redis/v9"
)

// TestScriptsWriteWhatCodecsRead runs every script (register, check, admit, fetch,
// ack, report, undeliverable, reject, expire, lease) and the Go writers (bodies, preferences,
// businesses, API keys, the forwarder's status streams) through their
// packages' APIs, then reads back what they stored with the codecs of values.go: the
// values it knows must come back as written, and every key in the store must parse by
// the codec of its kind. A script and a codec that disagree (a field renamed, an event
// or record reordered, a state letter changed) fail here.
func TestScriptsWriteWhatCodecsRead(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rdb := rs.Client
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	var clock atomic.Int64 // ms; the delivery service's background work reads it too
	clock.Store(now.UnixMilli())
	nowFn := func() time.Time { return time.UnixMilli(clock.Load()) }
	seen := map[string]bool{} // kinds of key parsed

	// Businesses and API keys (Go writers).
	bs := business.New(rdb)
	biz, err := bs.Create(ctx, "Acme", now)
	must(t, err)
	_, keyID, err := bs.IssueKey(ctx, biz, now)
	must(t, err)
	_, gone, err := bs.IssueKey(ctx, biz, now)
	must(t, err)
	must(t, bs.RevokeKey(ctx, gone, now))
	// Signing keys of every origin and state: a first key, retired but on the chain of
	// the one it endorsed, set aside by the operator's replacement.
	first, _ := e2e.GenerateSigningKey()
	next, _ := e2e.GenerateSigningKey()
	replaced, _ := e2e.GenerateSigningKey()
	must(t, bs.SetSigningKey(ctx, biz, first.PublicKey(), nil))
	endorsement, err := e2e.EndorseSigningKey(first, biz, next.PublicKey())
	must(t, err)
	must(t, bs.SetSigningKey(ctx, biz, next.PublicKey(), &business.Endorsement{By: e2e.KeyID(first.PublicKey()), Signature: endorsement}))
	must(t, bs.RetireSigningKey(ctx, biz, e2e.KeyID(first.PublicKey())))
	must(t, bs.ReplaceSigningKey(ctx, biz, replaced.PublicKey()))
	rec, err := keys.ParseBusiness(rdb.HGetAll(ctx, keys.Business(biz).Record()).Val())
	d := business.DefaultLimits
	wantRec := keys.BusinessRecord{DisplayName: "Acme", Created: now, CurrentSigningKey: e2e.KeyID(replaced.PublicKey()),
		SigningKeys: map[string]keys.SigningKeyRecord{
			e2e.KeyID(first.PublicKey()): {PublicKey: first.PublicKey(), Origin: keys.SigningKeyFirst, State: keys.SigningKeyRetired},
			e2e.KeyID(next.PublicKey()): {PublicKey: next.PublicKey(), Origin: keys.SigningKeyEndorsed,
				EndorsedBy: e2e.KeyID(first.PublicKey()), Endorsement: endorsement, State: keys.SigningKeySetAside},
			e2e.KeyID(replaced.PublicKey()): {PublicKey: replaced.PublicKey(), Origin: keys.SigningKeyReplaced, State: keys.SigningKeyInUse},
		},
		Limits: &keys.BusinessLimits{PerSecond: d.PerSecond, Burst: d.Burst, DailyUnique: d.DailyUnique}}
	if err != nil || !reflect.DeepEqual(rec, wantRec) {
		t.Fatalf("business record = %+v, %v; want %+v", rec, err, wantRec)
	}
	if k, err := keys.ParseAPIKey(rdb.HGetAll(ctx, keys.APIKey(keyID)).Val()); err != nil || k.Business != biz || !k.Revoked.IsZero() {
		t.Fatalf("API key = %+v, %v", k, err)
	}
	if k, err := keys.ParseAPIKey(rdb.HGetAll(ctx, keys.APIKey(gone)).Val()); err != nil || !k.Revoked.Equal(now) {
		t.Fatalf("revoked API key = %+v, %v", k, err)
	}

	// register.lua: a wrong code is counted, the right one adds the device.
	uid := keys.UID([]byte("test-secret"), "+14155550100")
	u := keys.Recipient(uid)
	svc := delivery.New(rdb, delivery.WithClock(nowFn), delivery.WithExpirySweep(10*time.Millisecond))
	defer svc.Close()
	devs := svc.Devices()
	code, _, err := devs.IssueCode(ctx, uid, now)
	must(t, err)
	wrong := strconv.Itoa((int(code[0]-'0')+1)%10) + code[1:]
	if _, err := devs.Register(ctx, uid, wrong, []byte("pk"), 1, now); !errors.Is(err, delivery.ErrBadCode) {
		t.Fatalf("Register with a wrong code = %v", err)
	}
	if c, err := keys.ParseCode(rdb.HGetAll(ctx, u.Code()).Val()); err != nil || c.Failures != 1 || c.Hash != sha(code) {
		t.Fatalf("code after a wrong guess = %+v, %v", c, err)
	}
	checkStore(t, rdb, seen)
	pub1, pub2 := []byte("public key one"), []byte("public key two")
	reg1, err := devs.Register(ctx, uid, code, pub1, 1, now)
	must(t, err)
	d1, tok1 := reg1.DeviceID, reg1.Token
	code, _, err = devs.IssueCode(ctx, uid, now)
	must(t, err)
	// register.lua, approve.lua: the second device waits for the first to approve it.
	reg2, err := devs.Register(ctx, uid, code, pub2, 2, now)
	must(t, err)
	d2 := reg2.DeviceID
	if !reg2.Pending {
		t.Fatal("the number's second device is active without approval")
	}
	checkStore(t, rdb, seen)
	must(t, devs.Approve(ctx, delivery.Principal{UID: uid, DeviceID: d1}, d2, e2e.KeyID(pub2), now))
	must(t, devs.SetPushEndpoint(ctx, delivery.Principal{UID: uid, DeviceID: d1},
		keys.PushEndpoint{Service: keys.PushWeb, Address: "https://push.example/abc"}))
	// noticeack.lua: the first device has shown the notices.
	notices := rdb.XRange(ctx, u.Notices(), "-", "+").Val()
	if len(notices) != 2 {
		t.Fatalf("%d notices after a registration and an approval, want 2", len(notices))
	}
	must(t, devs.AckNotices(ctx, delivery.Principal{UID: uid, DeviceID: d1}, []string{notices[1].ID}))
	r1, err := keys.ParseDeviceRecord(rdb.HGet(ctx, u.Devices(), d1).Val())
	want1 := keys.DeviceRecord{Algorithm: 1, PublicKey: pub1, TokenHash: sha(tok1), Created: now, KeyID: e2e.KeyID(pub1)}
	if err != nil || !reflect.DeepEqual(r1, want1) {
		t.Fatalf("device record = %+v, %v; want %+v", r1, err, want1)
	}

	// Preferences (Go writers).
	store := blocklist.New(rdb, blocklist.Caps{MarketingPerWindow: 5, MarketingWindow: time.Hour,
		PairInterval: time.Second, PairBurst: 10, NewWindow: time.Hour})
	must(t, store.Block(ctx, uid, biz, now))
	must(t, store.Unblock(ctx, uid, biz, now))
	must(t, store.SetConsent(ctx, uid, biz, blocklist.Marketing, blocklist.ConsentIn, now))
	ev := blocklist.Evidence{Source: "web form", Collected: now.Add(-time.Hour), Reference: "order-1"}
	_, err = store.RecordConsent(ctx, uid, biz, blocklist.Transactional, blocklist.ConsentIn, ev, now, blocklist.NewUnlimited)
	must(t, err)

	// check.lua: the devices it reveals are records the Go codec reads.
	chk, err := store.Check(ctx, uid, biz, blocklist.Marketing, now, blocklist.NewAllowed)
	if err != nil || chk.Outcome != blocklist.Accepted || !chk.StartedNew || len(chk.Devices) != 2 {
		t.Fatalf("Check = %+v, %v", chk, err)
	}
	for id, line := range chk.Devices {
		if r, err := keys.ParseDeviceRecord(line); err != nil || r.KeyID == "" {
			t.Fatalf("Check revealed device %s as %q: %v", id, line, err)
		}
	}
	if v := rdb.Get(ctx, u.Seen(biz)).Val(); v != strconv.FormatInt(now.UnixMilli(), 10) {
		t.Fatalf("seen mark = %q", v)
	}

	// admit.lua reads the key id that Go wrote into the device record.
	k1 := e2e.KeyID(pub1)
	admission := func(id, cm string, cat blocklist.Category, body string, ttl time.Duration, envs ...blocklist.Envelope) blocklist.Admission {
		return blocklist.Admission{UID: uid, Business: biz, Category: cat, Kind: "offer", ClientMessageID: cm,
			MessageID: id, Now: now, Expires: now.Add(ttl), Body: []byte(body), Envelopes: envs, New: blocklist.NewAllowed}
	}
	m1 := keys.NewMessageID(uid, now)
	ds, err := store.Admit(ctx, []blocklist.Admission{admission(m1, "c1", blocklist.Marketing, "body one", time.Hour,
		blocklist.Envelope{DeviceID: d1, Ciphertext: []byte("wrap 1"), KeyID: e2e.KeyID(pub2)},
		blocklist.Envelope{DeviceID: d2, Ciphertext: []byte("wrap 2")})})
	if err != nil || ds[0].Outcome != blocklist.StaleDevices || !slices.Equal(ds[0].Retired, []string{d1}) {
		t.Fatalf("Admit to a retired key = %+v, %v", ds, err)
	}
	a1 := admission(m1, "c1", blocklist.Marketing, "body one", time.Hour,
		blocklist.Envelope{DeviceID: d1, Ciphertext: []byte("wrap 1"), KeyID: k1},
		blocklist.Envelope{DeviceID: d2, Ciphertext: []byte("wrap 2")})
	a1.SigningKeyID = e2e.KeyID(next.PublicKey())
	a1.PendingBytes = 1234
	ds, err = store.Admit(ctx, []blocklist.Admission{a1})
	if err != nil || ds[0].Outcome != blocklist.Accepted {
		t.Fatalf("Admit = %+v, %v", ds, err)
	}
	msg, err := keys.ParseMessage(rdb.HGetAll(ctx, u.Message(m1)).Val())
	wantMsg := keys.Message{Business: biz, Category: keys.CategoryMarketing, Kind: "offer", ClientMessageID: "c1",
		Sent: now, Expires: now.Add(time.Hour), BodyHash: blocklist.BodyHash([]byte("body one")), SigningKeyID: e2e.KeyID(next.PublicKey()),
		PendingBytes: 1234, Devices: map[string]keys.MessageDevice{d1: {State: keys.StateQueued, KeyID: k1}, d2: {State: keys.StateQueued}}}
	if err != nil || !reflect.DeepEqual(msg, wantMsg) {
		t.Fatalf("message = %+v, %v; want %+v", msg, err, wantMsg)
	}
	if env := rdb.Get(ctx, u.Envelope(m1, d1)).Val(); env != "wrap 1" {
		t.Fatalf("envelope = %q", env)
	}
	if id := rdb.Get(ctx, u.Idempotency(biz, "c1")).Val(); id != m1 {
		t.Fatalf("idempotency = %q, want %s", id, m1)
	}
	pref, err := keys.ParsePref(rdb.HGetAll(ctx, u.Pref(biz)).Val())
	wantPref := keys.Pref{BlockedAt: now, Last: now, PairTAT: now.Add(time.Second),
		Own:      map[string]keys.OwnConsent{"m": {Consent: keys.ConsentIn, At: now}},
		Recorded: map[string]keys.RecordedConsent{"t": {Consent: keys.ConsentIn, At: now, Source: "web form", Reference: "order-1", Collected: ev.Collected}}}
	if err != nil || !reflect.DeepEqual(pref, wantPref) {
		t.Fatalf("pref = %+v, %v; want %+v", pref, err, wantPref)
	}
	events := outbox(t, rdb, u)
	if want := (keys.Event{Status: keys.StatusAccepted, Business: biz, MessageID: m1, ClientMessageID: "c1", Time: now, Bytes: 1234}); len(events) != 1 || events[0] != want {
		t.Fatalf("outbox = %+v, want %+v", events, want)
	}
	checkStore(t, rdb, seen)

	// fetch.lua: the delivery is the message as admitted.
	mb := svc.Mailboxes()
	got := receive(t, mb, delivery.Principal{UID: uid, DeviceID: d1})
	wantDel := delivery.Delivery{MessageID: m1, Business: biz, Category: "m", Kind: "offer", ClientMessageID: "c1",
		Sent: now, Expires: now.Add(time.Hour), Ciphertext: []byte("wrap 1"), Body: []byte("body one"), KeyID: k1,
		SigningKeyID: e2e.KeyID(next.PublicKey())}
	if !reflect.DeepEqual(got, wantDel) {
		t.Fatalf("fetched %+v, want %+v", got, wantDel)
	}

	// ack.lua and report.lua.
	if unknown, err := mb.Ack(ctx, delivery.Principal{UID: uid, DeviceID: d1}, []string{m1}, true); err != nil || len(unknown) != 0 {
		t.Fatalf("Ack = %v, %v", unknown, err)
	}
	if b, err := mb.Report(ctx, delivery.Principal{UID: uid, DeviceID: d1}, m1, "spam"); err != nil || b != biz {
		t.Fatalf("Report = %q, %v", b, err)
	}
	msg, err = keys.ParseMessage(rdb.HGetAll(ctx, u.Message(m1)).Val())
	if err != nil || msg.Devices[d1] != (keys.MessageDevice{State: keys.StateRead, KeyID: k1, Report: "spam"}) {
		t.Fatalf("message after ack and report = %+v, %v", msg, err)
	}
	events = outbox(t, rdb, u)[1:]
	for i, st := range []string{keys.StatusDelivered, keys.StatusRead} {
		want := keys.Event{Status: st, Business: biz, MessageID: m1, ClientMessageID: "c1", DeviceID: d1, Time: now}
		if len(events) != 2 || events[i] != want {
			t.Fatalf("events after ack = %+v, want %+v at %d", events, want, i)
		}
	}

	// undeliverable.lua: a message whose body has been gone for a while is expired on
	// the device.
	m2 := keys.NewMessageID(uid, now)
	ds, err = store.Admit(ctx, []blocklist.Admission{admission(m2, "c2", blocklist.Transactional, "body two", time.Hour,
		blocklist.Envelope{DeviceID: d1, Ciphertext: []byte("wrap 21")}, blocklist.Envelope{DeviceID: d2, Ciphertext: []byte("wrap 22")})})
	if err != nil || ds[0].Outcome != blocklist.Accepted {
		t.Fatalf("Admit = %+v, %v", ds, err)
	}
	must(t, rdb.Del(ctx, keys.Body(blocklist.BodyHash([]byte("body two")))).Err())
	clock.Store(now.Add(2 * time.Minute).UnixMilli())
	if got := receive(t, mb, delivery.Principal{UID: uid, DeviceID: d2}); got.MessageID != m1 {
		t.Fatalf("device 2 got %s, want %s", got.MessageID, m1)
	}
	msg, err = keys.ParseMessage(rdb.HGetAll(ctx, u.Message(m2)).Val())
	if err != nil || msg.Devices[d2].State != keys.StateExpired || msg.Devices[d1].State != keys.StateQueued {
		t.Fatalf("message without its body = %+v, %v", msg, err)
	}

	// reject.lua: device 2 refuses message 1; it fails there, with the reason.
	if unknown, err := mb.Reject(ctx, delivery.Principal{UID: uid, DeviceID: d2},
		[]delivery.Rejection{{MessageID: m1, Reason: keys.RejectHeaderMismatch}}); err != nil || len(unknown) != 0 {
		t.Fatalf("Reject = %v, %v", unknown, err)
	}
	// Queued on no device now, message 1 is settled: cut to what a read receipt or a
	// report needs.
	msg, err = keys.ParseMessage(rdb.HGetAll(ctx, u.Message(m1)).Val())
	wantMsg = keys.Message{Settled: true, Business: biz, ClientMessageID: "c1", Devices: map[string]keys.MessageDevice{
		d1: {State: keys.StateRead, Report: "spam"}, d2: {State: keys.StateFailed}}}
	if err != nil || !reflect.DeepEqual(msg, wantMsg) {
		t.Fatalf("message after the refusal = %+v, %v; want %+v", msg, err, wantMsg)
	}
	// The refusal's event, then the settled event that takes the message's pending
	// bytes off its business's count.
	if evs := outbox(t, rdb, u); evs[len(evs)-2] != (keys.Event{Status: keys.StatusFailed, Business: biz, MessageID: m1,
		ClientMessageID: "c1", DeviceID: d2, Time: nowFn(), Reason: keys.RejectHeaderMismatch}) ||
		evs[len(evs)-1] != (keys.Event{Status: keys.StatusSettled, Business: biz, MessageID: m1, ClientMessageID: "c1",
			Time: nowFn(), Bytes: -1234}) {
		t.Fatalf("last events after the refusal = %+v", evs[len(evs)-2:])
	}

	// expire.lua: the sweep expires a message on every device that has not had it.
	m3 := keys.NewMessageID(uid, now)
	// It expires 150 s after now: later than the clock reads until the sweep is meant
	// to find it, so that nothing sweeps it while the store is being checked.
	ds, err = store.Admit(ctx, []blocklist.Admission{admission(m3, "c3", blocklist.Transactional, "", 150*time.Second,
		blocklist.Envelope{DeviceID: d1, Ciphertext: []byte("wrap 31")}, blocklist.Envelope{DeviceID: d2, Ciphertext: []byte("wrap 32")})})
	if err != nil || ds[0].Outcome != blocklist.Accepted {
		t.Fatalf("Admit = %+v, %v", ds, err)
	}
	// The gateway's background work (Service.Run) indexes it, sweeps the index and
	// forwards the outbox: what the outbox holds now is what the business must get.
	events = outbox(t, rdb, u)
	ctxRun, stop := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { svc.Run(ctxRun); close(ran) }()
	svc.Expiries().Track(m3, now.Add(150*time.Second))
	waitFor(t, "the expiry index to hold the message", func() bool { return indexed(rdb, m3) })
	checkStore(t, rdb, seen) // before the sweep takes it out of the index
	clock.Store(now.Add(3 * time.Minute).UnixMilli())
	// Expired on both devices, received by neither, it settles by going.
	waitFor(t, "the sweep to expire the message on both devices", func() bool {
		return rdb.Exists(ctx, u.Message(m3)).Val() == 0
	})
	stop()
	<-ran // Run forwards what is pending before it returns
	for _, d := range []string{d1, d2} {
		if rdb.ZScore(ctx, u.Mailbox(d), m3).Err() != redis.Nil || rdb.Exists(ctx, u.Envelope(m3, d)).Val() != 0 {
			t.Fatalf("expired message still queued for %s", d)
		}
	}
	// The forwarder: outbox lines became status stream entries, in order, and left
	// the outbox.
	if left := outbox(t, rdb, u); len(left) != 0 {
		t.Fatalf("outbox after Run = %+v, want it forwarded", left)
	}
	var streamed []keys.Event
	for _, x := range rdb.XRange(ctx, keys.Business(biz).Statuses(), "-", "+").Val() {
		e, err := keys.ParseStreamEvent(biz, x.Values)
		must(t, err)
		streamed = append(streamed, e)
	}
	// Settled events go to no stream, and the stream does not show pending bytes; the
	// business's count moved with both, to what is in flight: nothing.
	var statuses []keys.Event
	for _, e := range events {
		if e.Status != keys.StatusSettled {
			e.Bytes = 0
			statuses = append(statuses, e)
		}
	}
	if len(streamed) != len(statuses)+2 || !slices.Equal(streamed[:len(statuses)], statuses) {
		t.Fatalf("status stream %+v, want the outbox's %+v and then the sweep's two", streamed, statuses)
	}
	if pend := rdb.HGet(ctx, keys.Business(biz).Record(), keys.BusinessPending).Val(); pend != "0" {
		t.Fatalf("the business's pending bytes after its message settled = %q, want 0", pend)
	}
	var expired []string
	for _, e := range streamed {
		if e.Status == keys.StatusExpired {
			expired = append(expired, e.MessageID+"/"+e.DeviceID)
		}
	}
	slices.Sort(expired)
	want := []string{m2 + "/" + d2, m3 + "/" + d1, m3 + "/" + d2}
	slices.Sort(want)
	if !slices.Equal(expired, want) {
		t.Fatalf("expired events %v, want %v", expired, want)
	}
	checkStore(t, rdb, seen)

	// allowance.lua: a lookup of a person new to a business with an allowance leases
	// a unit of it.
	biz2, err := bs.Create(ctx, "Newcomer", now)
	must(t, err)
	gw := adm.New(rdb, store, bs, adm.WithClock(nowFn))
	chk2, err := gw.Lookup(ctx, biz2, uid, blocklist.Transactional)
	gw.Close()
	if err != nil || chk2.Outcome != blocklist.Accepted || !chk2.StartedNew {
		t.Fatalf("Lookup by a new business = %+v, %v", chk2, err)
	}

	// lease.lua.
	lim := ratelimit.New(rdb, ratelimit.WithClock(nowFn))
	if r, err := lim.Allow(ctx, biz, ratelimit.PerSecond(10, 20), 1); err != nil || r.Allowed != 1 {
		t.Fatalf("Allow = %+v, %v", r, err)
	}
	lim.Close()
	if b, err := keys.ParseRateBucket(rdb.HGetAll(ctx, keys.Business(biz).RateBucket()).Val()); err != nil ||
		b.Tokens < 0 || b.Tokens > 20 || !b.At.Equal(nowFn()) {
		t.Fatalf("rate bucket = %+v, %v", b, err)
	}

	checkStore(t, rdb, seen)
	var missed []string
	for _, k := range kinds {
		if !seen[k.name] && !marks[k.name] {
			missed = append(missed, k.name)
		}
	}
	if len(missed) > 0 {
		t.Fatalf("the story wrote no key of kinds %v: extend it or drop the kinds", missed)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// outbox parses the recipient's outbox.
func outbox(t *testing.T, rdb *redis.Client, u keys.Recipient) []keys.Event {
	t.Helper()
	var out []keys.Event
	for _, line := range rdb.LRange(context.Background(), u.Outbox(), 0, -1).Val() {
		e, err := keys.ParseEvent(line)
		if err != nil {
			t.Fatalf("outbox line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// receive runs a Receive stream for the device until its first delivery.
func receive(t *testing.T, mb *delivery.Mailboxes, p delivery.Principal) delivery.Delivery {
	t.Helper()
	// The deadline only bounds a hang.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []delivery.Delivery
	err := mb.Stream(ctx, p, func(d delivery.Delivery) error {
		got = append(got, d)
		cancel()
		return nil
	}, func(delivery.Notice) error { return nil })
	if err != nil || len(got) == 0 {
		t.Fatalf("Stream = %v with %d deliveries", err, len(got))
	}
	return got[0]
}

// waitFor polls cond until it holds; the deadline only bounds a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func indexed(rdb *redis.Client, id string) bool {
	ctx := context.Background()
	for _, k := range rdb.Keys(ctx, "hr:{x:*").Val() {
		if rdb.ZScore(ctx, k, id).Err() == nil {
			return true
		}
	}
	return false
}

// A kind of key: the pattern of its names and how its value is read.
type kind struct {
	name  string
	re    *regexp.Regexp
	check func(t *testing.T, rdb *redis.Client, key string, m []string)
}

// marks are kinds of short-lived flags ("1", expiring by themselves) that the story
// need not leave behind: delivery's waker tests write and read them.
var marks = map[string]bool{"live and woken marks": true}

var (
	ctx0  = context.Background()
	kinds = []kind{
		{"devices", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:dev$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			for id, line := range rdb.HGetAll(ctx0, key).Val() {
				if _, err := keys.ParseDeviceRecord(line); err != nil {
					t.Errorf("%s %s: %v", key, id, err)
				}
			}
		}},
		{"pending devices", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:pend$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			for id, line := range rdb.HGetAll(ctx0, key).Val() {
				if _, err := keys.ParseDeviceRecord(line); err != nil {
					t.Errorf("%s %s: %v", key, id, err)
				}
				if rdb.HExists(ctx0, keys.Recipient(m[1]).Devices(), id).Val() {
					t.Errorf("%s: device %s is both pending and active", key, id)
				}
			}
		}},
		{"notices", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:ntc$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			for _, x := range rdb.XRange(ctx0, key, "-", "+").Val() {
				line, _ := x.Values[keys.NoticeField].(string)
				if _, err := keys.ParseNotice(line); err != nil || len(x.Values) != 1 {
					t.Errorf("%s %s: %v (%d fields)", key, x.ID, err, len(x.Values))
				}
			}
		}},
		{"notice cursors", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:ntcur$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			for dev, id := range rdb.HGetAll(ctx0, key).Val() {
				if len(rdb.XRange(ctx0, keys.Recipient(m[1]).Notices(), id, id).Val()) != 1 {
					t.Errorf("%s: device %s acknowledged %s, which is not a notice", key, dev, id)
				}
			}
		}},
		{"push endpoints", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:push$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			for dev, line := range rdb.HGetAll(ctx0, key).Val() {
				if _, err := keys.ParsePushEndpoint(line); err != nil {
					t.Errorf("%s %s: %v", key, dev, err)
				}
				if !rdb.HExists(ctx0, keys.Recipient(m[1]).Devices(), dev).Val() {
					t.Errorf("%s: an endpoint for %s, not a device", key, dev)
				}
			}
		}},
		{"live and woken marks", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:(live|wk):([^:]+)$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			if rdb.Get(ctx0, key).Val() != "1" || rdb.PTTL(ctx0, key).Val() <= 0 {
				t.Errorf("%s: not a mark that expires", key)
			}
		}},
		{"code", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:code$`), hashOf(func(h map[string]string) error {
			_, err := keys.ParseCode(h)
			return err
		})},
		{"verification counts", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:vfy$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			if _, err := keys.ParseVerifyCounts(rdb.HGetAll(ctx0, key).Val()); err != nil || rdb.PTTL(ctx0, key).Val() <= 0 {
				t.Errorf("%s: %v, or it never expires", key, err)
			}
		}},
		{"pref", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:pref:([a-z0-9_]+)$`), hashOf(func(h map[string]string) error {
			_, err := keys.ParsePref(h)
			return err
		})},
		{"businesses", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:biz$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			for _, b := range rdb.SMembers(ctx0, key).Val() {
				if rdb.Exists(ctx0, keys.Recipient(m[1]).Pref(b)).Val() != 1 {
					t.Errorf("%s names %s, which has no pref hash", key, b)
				}
			}
		}},
		{"consent log", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:(b?)clog$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			// Each side holds its own entries only: the person's (clog), businesses' (bclog).
			for _, x := range rdb.XRange(ctx0, key, "-", "+").Val() {
				c, err := keys.ParseConsentChange(x.Values)
				if err != nil {
					t.Errorf("%s %s: %v", key, x.ID, err)
				} else if (c.By == keys.ConsentByUser) != (m[2] == "") {
					t.Errorf("%s %s: an entry by %s on this side", key, x.ID, c.By)
				}
			}
		}},
		{"idempotency", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:idem:([a-z0-9_]+):(.+)$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			// It outlives a message that settled with no device receiving it.
			id := rdb.Get(ctx0, key).Val()
			if rdb.Exists(ctx0, keys.Recipient(m[1]).Message(id)).Val() == 0 {
				if uid, ok := keys.MessageUID(id); !ok || uid != m[1] {
					t.Errorf("%s: %q is not a message id of its recipient", key, id)
				}
				return
			}
			messageOf(t, rdb, key, m[1], id)
		}},
		{"message", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:msg:([^:]+)$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			messageOf(t, rdb, key, m[1], m[2])
		}},
		{"envelope", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:msg:([^:]+):([^:]+)$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			msg := messageOf(t, rdb, key, m[1], m[2])
			if msg.Devices[m[3]].State != keys.StateQueued || rdb.Get(ctx0, key).Val() == "" {
				t.Errorf("%s: an envelope for a device in state %q", key, msg.Devices[m[3]].State)
			}
		}},
		{"mailbox", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:mb:([^:]+)$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			for _, id := range rdb.ZRange(ctx0, key, 0, -1).Val() {
				if msg := messageOf(t, rdb, key, m[1], id); msg.Devices[m[2]].State == "" {
					t.Errorf("%s holds %s, which is not for that device", key, id)
				}
			}
		}},
		{"sequence", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:seq$`), intOf},
		{"outbox", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:out$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			for _, line := range rdb.LRange(ctx0, key, 0, -1).Val() {
				if _, err := keys.ParseEvent(line); err != nil {
					t.Errorf("%s %q: %v", key, line, err)
				}
			}
		}},
		{"seen", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:seen:([a-z0-9_]+)$`), intOf},
		{"marketing log", regexp.MustCompile(`^hr:\{u:([a-z2-7]{26})\}:mk$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			for _, id := range rdb.ZRange(ctx0, key, 0, -1).Val() {
				if uid, ok := keys.MessageUID(id); !ok || uid != m[1] {
					t.Errorf("%s holds %q, not a message id of its recipient", key, id)
				}
			}
		}},
		{"business", regexp.MustCompile(`^hr:\{b:([a-z0-9_]+)\}$`), hashOf(func(h map[string]string) error {
			_, err := keys.ParseBusiness(h)
			return err
		})},
		{"business keys", regexp.MustCompile(`^hr:\{b:([a-z0-9_]+)\}:keys$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			for _, id := range rdb.SMembers(ctx0, key).Val() {
				if r, err := keys.ParseAPIKey(rdb.HGetAll(ctx0, keys.APIKey(id)).Val()); err != nil || r.Business != m[1] || !r.Revoked.IsZero() {
					t.Errorf("%s holds %s: %+v, %v", key, id, r, err)
				}
			}
		}},
		{"statuses", regexp.MustCompile(`^hr:\{b:([a-z0-9_]+)\}:st$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			for _, x := range rdb.XRange(ctx0, key, "-", "+").Val() {
				if _, err := keys.ParseStreamEvent(m[1], x.Values); err != nil {
					t.Errorf("%s %s: %v", key, x.ID, err)
				}
			}
		}},
		{"forwarded mark", regexp.MustCompile(`^hr:\{b:([a-z0-9_]+)\}:fw:([0-9a-f]{16})$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			// The mark names an event of the business's stream, and expires. (An event
			// that moved the business's pending bytes has a line the stream cannot
			// rebuild: the stream does not keep the bytes, and a settled event is not
			// in it. Its mark is only known to expire, with the count there.)
			found := rdb.HExists(ctx0, keys.Business(m[1]).Record(), keys.BusinessPending).Val()
			for _, x := range rdb.XRange(ctx0, keys.Business(m[1]).Statuses(), "-", "+").Val() {
				if e, err := keys.ParseStreamEvent(m[1], x.Values); err == nil && keys.EventID(e.Encode()) == m[2] {
					found = true
				}
			}
			if !found || rdb.PTTL(ctx0, key).Val() <= 0 {
				t.Errorf("%s: marks no event of the stream (%v) or never expires", key, found)
			}
		}},
		{"quality", regexp.MustCompile(`^hr:\{b:([a-z0-9_]+)\}:q$`), hashOf(func(h map[string]string) error {
			_, err := keys.ParseQuality(h)
			return err
		})},
		{"rate bucket", regexp.MustCompile(`^hr:\{b:([a-z0-9_]+)\}(:lk)?:gcra$`), hashOf(func(h map[string]string) error {
			_, err := keys.ParseRateBucket(h)
			return err
		})},
		{"outbox index", regexp.MustCompile(`^hr:\{o:([0-9]+)\}$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			// Members are recipient uids, each in its own shard, scored by a time.
			for _, z := range rdb.ZRangeWithScores(ctx0, key, 0, -1).Val() {
				uid, _ := z.Member.(string)
				if keys.OutboxIndex(uid) != key || !regexp.MustCompile(`^[a-z2-7]{26}$`).MatchString(uid) || z.Score <= 0 {
					t.Errorf("%s holds %v", key, z)
				}
			}
		}},
		{"rate leasers", regexp.MustCompile(`^hr:\{b:([a-z0-9_]+)\}(:lk)?:leasers$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			if n := rdb.ZCard(ctx0, key).Val(); n == 0 {
				t.Errorf("%s is empty", key)
			}
		}},
		{"new recipients", regexp.MustCompile(`^hr:\{b:([a-z0-9_]+)\}:new$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			for _, u := range rdb.ZRange(ctx0, key, 0, -1).Val() {
				if _, _, err := keys.ParseAllowanceUnit(u); err != nil {
					t.Errorf("%s: %v", key, err)
				}
			}
		}},
		{"API key", regexp.MustCompile(`^hr:\{k:([a-z2-7]+)\}$`), hashOf(func(h map[string]string) error {
			_, err := keys.ParseAPIKey(h)
			return err
		})},
		{"body", regexp.MustCompile(`^hr:\{m:([0-9a-f]{64})\}$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			if h := blocklist.BodyHash([]byte(rdb.Get(ctx0, key).Val())); h != m[1] {
				t.Errorf("%s holds a body whose hash is %s", key, h)
			}
		}},
		{"expiry index", regexp.MustCompile(`^hr:\{x:([0-9]+)\}$`), func(t *testing.T, rdb *redis.Client, key string, m []string) {
			for _, id := range rdb.ZRange(ctx0, key, 0, -1).Val() {
				if _, ok := keys.MessageUID(id); !ok {
					t.Errorf("%s holds %q, not a message id", key, id)
				}
			}
		}},
	}
)

func hashOf(parse func(map[string]string) error) func(*testing.T, *redis.Client, string, []string) {
	return func(t *testing.T, rdb *redis.Client, key string, _ []string) {
		t.Helper()
		if err := parse(rdb.HGetAll(ctx0, key).Val()); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
}

func intOf(t *testing.T, rdb *redis.Client, key string, _ []string) {
	if _, err := rdb.Get(ctx0, key).Int64(); err != nil {
		t.Errorf("%s: %v", key, err)
	}
}

// messageOf parses message id of recipient uid, which key names.
func messageOf(t *testing.T, rdb *redis.Client, key, uid, id string) keys.Message {
	t.Helper()
	if got, ok := keys.MessageUID(id); !ok || got != uid {
		t.Errorf("%s: %q is not a message id of its recipient", key, id)
		return keys.Message{}
	}
	m, err := keys.ParseMessage(rdb.HGetAll(ctx0, keys.Recipient(uid).Message(id)).Val())
	if err != nil {
		t.Errorf("%s: message %s: %v", key, id, err)
	}
	return m
}

// checkStore parses every key in the store by the codec of its kind, and notes the
// kinds it saw.
func checkStore(t *testing.T, rdb *redis.Client, seen map[string]bool) {
	t.Helper()
	for _, key := range rdb.Keys(ctx0, "*").Val() {
		matched := false
		for _, k := range kinds {
			if m := k.re.FindStringSubmatch(key); m != nil {
				k.check(t, rdb, key, m)
				seen[k.name], matched = true, true
				break
			}
		}
		if !matched && !strings.HasPrefix(key, "hr:n:") {
			t.Errorf("%s: no codec reads a key like it", key)
		}
	}
}
