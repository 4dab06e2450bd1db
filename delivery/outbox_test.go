package delivery

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
)

// TestFlushMovesEventsOnce: events in recipients' outboxes reach their businesses'
// streams, leave the outboxes, and a second flush moves nothing again.
func TestFlushMovesEventsOnce(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	u1, u2 := keys.Recipient("uaaaaaaaaaaaaaaaaaaaaaaaaa"), keys.Recipient("ubbbbbbbbbbbbbbbbbbbbbbbbb")
	rs.Client.RPush(ctx, u1.Outbox(), "A|biz_a|m1|c1||1000", "D|biz_a|m1|c1|d1|2000", "not an event")
	rs.Client.RPush(ctx, u2.Outbox(), "R|biz_b|m2|c2|d2|3000")
	svc := New(rs.Client)
	defer svc.Close()
	for range 2 {
		if err := svc.forwarder.flush(ctx, []string{string(u1), string(u2)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []keys.Recipient{u1, u2} {
		if n := rs.Client.LLen(ctx, u.Outbox()).Val(); n != 0 {
			t.Fatalf("%s still holds %d entries", u.Outbox(), n)
		}
	}
	a := rs.Client.XRange(ctx, keys.Business("biz_a").Statuses(), "-", "+").Val()
	b := rs.Client.XRange(ctx, keys.Business("biz_b").Statuses(), "-", "+").Val()
	if len(a) != 2 || len(b) != 1 {
		t.Fatalf("streams hold %d and %d events, want 2 and 1", len(a), len(b))
	}
	if a[0].Values["s"] != "A" || a[1].Values["s"] != "D" || a[1].Values["d"] != "d1" || b[0].Values["m"] != "m2" {
		t.Fatalf("events = %v, %v", a, b)
	}
	// A delivered event counts toward the business's quality figure.
	if q := rs.Client.HGetAll(ctx, keys.Business("biz_a").Quality()).Val(); len(q) != 1 {
		t.Fatalf("quality counters = %v, want one delivered bucket", q)
	}
}
