package blocklist

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
)

// TestPolicy is DESIGN.md's policy table, case by case: a block beats everything; the
// recipient's own consent beats the business's record; transactional is allowed unless
// opted out; marketing needs an opt-in. Admit and Check (LookupRecipient) agree.
func TestPolicy(t *testing.T) {
	rs := redistest.Start(t)
	s := New(rs.Client, Caps{})
	ctx := context.Background()
	now := time.Now()
	const biz = "biz_a"
	for i, tc := range []struct {
		cat            Category
		blocked        bool
		user, business Consent
		want           Outcome
	}{
		{Transactional, false, "", "", Accepted},
		{Transactional, true, ConsentIn, ConsentIn, Blocked},
		{Transactional, false, ConsentOut, "", OptedOut},
		{Transactional, false, "", ConsentOut, OptedOut},
		{Transactional, false, ConsentIn, ConsentOut, Accepted}, // the person's choice wins
		{Transactional, false, ConsentOut, ConsentIn, OptedOut}, // a business cannot undo an opt-out
		{Marketing, false, "", "", NotOptedIn},
		{Marketing, false, "", ConsentIn, Accepted}, // the business's record, where the person made none
		{Marketing, false, ConsentIn, "", Accepted},
		{Marketing, false, ConsentOut, ConsentIn, OptedOut},
		{Marketing, false, ConsentIn, ConsentOut, Accepted},
		{Marketing, true, ConsentIn, ConsentIn, Blocked},
	} {
		t.Run(fmt.Sprintf("%d/%s/blocked=%v/user=%q/business=%q", i, tc.cat, tc.blocked, tc.user, tc.business), func(t *testing.T) {
			uid := fmt.Sprintf("u%025d", i)
			if err := rs.Client.HSet(ctx, keys.Recipient(uid).Devices(), "d1", "2|AAAA|h|0|k").Err(); err != nil {
				t.Fatal(err)
			}
			if tc.blocked {
				s.Block(ctx, uid, biz, now)
			}
			if tc.user != "" {
				s.SetConsent(ctx, uid, biz, tc.cat, tc.user, now)
			}
			if tc.business != "" {
				s.RecordConsent(ctx, uid, biz, tc.cat, tc.business, Evidence{Source: "test", Collected: now}, now, NewUnlimited)
			}
			chk, err := s.Check(ctx, uid, biz, tc.cat, now, NewUnlimited)
			if err != nil {
				t.Fatal(err)
			}
			ds, err := s.Admit(ctx, []Admission{{UID: uid, Business: biz, Category: tc.cat, Kind: "k", ClientMessageID: "c",
				MessageID: uid + ".m", Now: now, Expires: now.Add(time.Hour), Envelopes: []Envelope{{DeviceID: "d1", Ciphertext: []byte("x")}}}})
			if err != nil {
				t.Fatal(err)
			}
			if ds[0].Outcome != tc.want || chk.Outcome != tc.want {
				t.Fatalf("Admit = %v, Check = %v; want %v", ds[0].Outcome, chk.Outcome, tc.want)
			}
			if (tc.want == Accepted) != (chk.Devices != nil) {
				t.Fatalf("Check revealed devices %v for outcome %v", chk.Devices, chk.Outcome)
			}
		})
	}
}

// TestMailboxLivesAsLongAsItsLongestMessage: a device's mailbox expires a day after
// the latest expiry of the messages it holds; a shorter-lived message never brings
// that forward, a longer-lived one moves it later.
func TestMailboxLivesAsLongAsItsLongestMessage(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client, Caps{})
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	const uid, biz = "u0000000000000000000000001", "biz_a"
	u := keys.Recipient(uid)
	if err := rs.Client.HSet(ctx, u.Devices(), "d1", "2|AAAA|h|0|k").Err(); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct{ ttl, want time.Duration }{
		{10 * time.Hour, 10 * time.Hour},
		{time.Hour, 10 * time.Hour},
		{20 * time.Hour, 20 * time.Hour},
	} {
		ds, err := s.Admit(ctx, []Admission{{UID: uid, Business: biz, Category: Transactional, Kind: "k",
			ClientMessageID: fmt.Sprint("c", i), MessageID: keys.NewMessageID(uid, now), Now: now,
			Expires: now.Add(tc.ttl), New: NewUnlimited, Envelopes: []Envelope{{DeviceID: "d1", Ciphertext: []byte("x")}}}})
		if err != nil || ds[0].Outcome != Accepted {
			t.Fatalf("message %d: %v, %v", i, ds, err)
		}
		got, err := rs.Client.PExpireTime(ctx, u.Mailbox("d1")).Result()
		if err != nil {
			t.Fatal(err)
		}
		// Within a second: the in-process store keeps an expiry as time left, not as a
		// time, so it reads back a few milliseconds off; the messages here are hours apart.
		want := now.Add(tc.want + 24*time.Hour)
		if d := time.UnixMilli(got.Milliseconds()).Sub(want); d < -time.Second || d > time.Second {
			t.Errorf("after message %d (ttl %v): the mailbox expires at %v, want %v", i, tc.ttl,
				time.UnixMilli(got.Milliseconds()), want)
		}
	}
}
