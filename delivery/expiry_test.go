package delivery

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
)

// track indexes messages by their expiry, as the admitting gateway does, and waits
// until the index is written.
func (f *fixture) track(s *Service, ttl time.Duration, ids ...string) {
	f.t.Helper()
	for _, id := range ids {
		s.Expiries().Track(id, f.clock.Now().Add(ttl))
	}
	s.expiries.flush(f.ctx)
}

// indexed is how many messages the expiry index holds.
func (f *fixture) indexed() int64 {
	f.t.Helper()
	var n int64
	for i := range expiryShards {
		n += f.rdb.ZCard(f.ctx, keys.ExpiryIndex(i)).Val()
	}
	return n
}

func (f *fixture) sweep(s *Service) {
	f.t.Helper()
	if err := s.expiries.sweep(f.ctx); err != nil {
		f.t.Fatal(err)
	}
}

// TestSweepReportsQueuedDevices: the sweep reports a message expired on each device
// that still had it queued, once, and on no device that received it; a message not
// yet expired stays indexed until it is.
func TestSweepReportsQueuedDevices(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	uid := recipient(0)
	phone, laptop, tablet := f.device(uid), f.device(uid), f.device(uid)
	short := f.send(time.Minute, phone, laptop, tablet)
	long := f.send(time.Hour, phone, laptop, tablet)
	f.track(f.svc, time.Minute, short)
	f.track(f.svc, time.Hour, long)
	for _, ack := range []struct {
		p    Principal
		read bool
	}{{phone, false}, {laptop, true}} {
		if _, err := f.svc.Mailboxes().Ack(f.ctx, ack.p, []string{short}, ack.read); err != nil {
			t.Fatal(err)
		}
	}
	f.events() // ACCEPTED, DELIVERED, READ

	f.clock.Add(2 * time.Minute)
	f.sweep(f.svc)
	if got, want := f.events(), []status{{StatusExpired, short, tablet.DeviceID}}; !slices.Equal(got, want) {
		t.Fatalf("first sweep reported %v, want %v", got, want)
	}
	if n := f.indexed(); n != 1 {
		t.Fatalf("the index holds %d messages, want only the unexpired one", n)
	}
	f.sweep(f.svc)
	if got := f.events(); len(got) != 0 {
		t.Fatalf("a second sweep reported %v", got)
	}
	// The tablet, back at last, finds nothing of it and cannot ack it.
	if ds, _ := f.page(tablet, ""); !slices.Equal(ids(ds), []string{long}) {
		t.Fatalf("the tablet fetched %v, want only %s", ids(ds), long)
	}
	if unknown, _ := f.svc.Mailboxes().Ack(f.ctx, tablet, []string{short}, false); !slices.Equal(unknown, []string{short}) {
		t.Fatalf("the tablet's ack of the expired message: unknown = %v", unknown)
	}

	f.clock.Add(time.Hour)
	f.sweep(f.svc)
	want := []status{{StatusExpired, long, phone.DeviceID}, {StatusExpired, long, laptop.DeviceID}, {StatusExpired, long, tablet.DeviceID}}
	if got := f.events(); !slices.Equal(sorted(got), sorted(want)) {
		t.Fatalf("sweep after the long expiry reported %v, want %v", got, want)
	}
	if n := f.indexed(); n != 0 {
		t.Fatalf("the index still holds %d messages", n)
	}
}

// TestSweepAfterFetch: a message a fetch already reported expired is not reported
// again by the sweep, on that device; its other devices are.
func TestSweepAfterFetch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	uid := recipient(0)
	phone, laptop := f.device(uid), f.device(uid)
	id := f.send(time.Minute, phone, laptop)
	f.track(f.svc, time.Minute, id)
	f.events()
	f.clock.Add(2 * time.Minute)
	f.page(phone, "")
	f.sweep(f.svc)
	want := []status{{StatusExpired, id, phone.DeviceID}, {StatusExpired, id, laptop.DeviceID}}
	if got := f.events(); !slices.Equal(got, want) {
		t.Fatalf("reported %v, want %v", got, want)
	}
}

// TestTwoSweepersReportOnce: gateways sweep the same index at the same time; each
// queued device of each expired message is reported once in all.
func TestTwoSweepersReportOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := f.service() // a second gateway on the same store
	var want []status
	for r := range 4 {
		uid := recipient(r)
		a, b := f.device(uid), f.device(uid)
		for i := range 25 {
			id := f.send(time.Minute, a, b)
			f.track(f.svc, time.Minute, id)
			want = append(want, status{StatusExpired, id, b.DeviceID})
			if i%2 == 0 {
				if _, err := f.svc.Mailboxes().Ack(f.ctx, a, []string{id}, false); err != nil {
					t.Fatal(err)
				}
			} else {
				want = append(want, status{StatusExpired, id, a.DeviceID})
			}
		}
	}
	f.events()
	f.clock.Add(2 * time.Minute)
	var wg sync.WaitGroup
	for _, s := range []*Service{f.svc, other, f.svc, other} {
		wg.Go(func() {
			if err := s.expiries.sweep(f.ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := f.events(); !slices.Equal(sorted(got), sorted(want)) {
		t.Fatalf("the sweepers reported %d events, want %d, one per queued device", len(got), len(want))
	}
	if n := f.indexed(); n != 0 {
		t.Fatalf("the index still holds %d messages", n)
	}
}

func sorted(s []status) []status {
	return slices.SortedFunc(slices.Values(s), func(a, b status) int { return strings.Compare(a.String(), b.String()) })
}
