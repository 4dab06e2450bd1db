package blocklist

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
)

// TestBodyLivesAsLongAsItsLongestMessage: a body shared by several messages is stored
// once and kept a day past the expiry of the longest-lived of them; a later, shorter
// message never shortens it.
func TestBodyLivesAsLongAsItsLongestMessage(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client, Caps{})
	ctx := context.Background()
	now := time.Now()
	body := []byte("one sealed body")
	dev := keys.DeviceRecord{Algorithm: 2, PublicKey: []byte("pk"), TokenHash: "h", Created: now, KeyID: "k"}.Encode()
	for i, tc := range []struct{ ttl, longest time.Duration }{
		{time.Hour, time.Hour},
		{10 * time.Hour, 10 * time.Hour},
		{2 * time.Hour, 10 * time.Hour},
	} {
		uid := fmt.Sprintf("u%025d", i)
		if err := rs.Client.HSet(ctx, keys.Recipient(uid).Devices(), "d1", dev).Err(); err != nil {
			t.Fatal(err)
		}
		ds, err := s.Admit(ctx, []Admission{{UID: uid, Business: "biz_a", Category: Transactional, Kind: "receipt",
			ClientMessageID: "c", MessageID: keys.NewMessageID(uid, now), Now: now, Expires: now.Add(tc.ttl), Body: body,
			Envelopes: []Envelope{{DeviceID: "d1", Ciphertext: []byte("wrap")}}}})
		if err != nil || ds[0].Outcome != Accepted {
			t.Fatalf("Admit %d = %+v, %v", i, ds, err)
		}
		k := keys.Body(BodyHash(body))
		if got := rs.Client.Get(ctx, k).Val(); got != string(body) {
			t.Fatalf("after admission %d the body is %q", i, got)
		}
		// The in-process store keeps expiries relative to its clock: allow it a second.
		want := now.Add(tc.longest + 24*time.Hour)
		got, err := rs.Client.PExpireTime(ctx, k).Result()
		if at := time.UnixMilli(int64(got / time.Millisecond)); err != nil || at.Sub(want).Abs() > time.Second {
			t.Fatalf("after admission %d the body expires at %v (%v), want %v", i, at, err, want)
		}
	}
}
