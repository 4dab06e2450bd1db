package business

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestStepDown walks the tiers: the new-recipient limit drops to the next tier below
// it, and once it is at the lowest tier the rate and burst halve, down to a floor that
// never lifts a limit the operator set lower. No case raises any limit.
func TestStepDown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		in, want Limits
	}{
		{"unlimited to the top tier", Limits{10, 20, 0}, Limits{10, 20, 100_000}},
		{"above the top tier to it", Limits{10, 20, 150_000}, Limits{10, 20, 100_000}},
		{"top tier to the next", Limits{10, 20, 100_000}, Limits{10, 20, 10_000}},
		{"between tiers to the one below", Limits{10, 20, 50_000}, Limits{10, 20, 10_000}},
		{"to the lowest tier", Limits{10, 20, 10_000}, Limits{10, 20, 1_000}},
		{"just above the lowest tier", Limits{10, 20, 1_001}, Limits{10, 20, 1_000}},
		{"lowest tier: rate and burst halve", Limits{10, 20, 1_000}, Limits{5, 10, 1_000}},
		{"below the lowest tier: rate and burst halve", Limits{10, 20, 500}, Limits{5, 10, 500}},
		{"odd burst rounds down", Limits{3, 3, 1_000}, Limits{1.5, 1, 1_000}},
		{"halving stops at the floor", Limits{1.5, 1, 1_000}, Limits{1, 1, 1_000}},
		{"at the floor", Limits{1, 1, 1_000}, Limits{1, 1, 1_000}},
		{"a rate below the floor stays", Limits{0.5, 1, 1_000}, Limits{0.5, 1, 1_000}},
		{"a tiny rate stays", Limits{0.001, 1, 1}, Limits{0.001, 1, 1}},
		{"a burst below the floor stays", Limits{0.5, 0, 1_000}, Limits{0.5, 0, 1_000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := stepDown(tc.in)
			if got != tc.want {
				t.Errorf("stepDown(%+v) = %+v, want %+v", tc.in, got, tc.want)
			}
			if got.PerSecond > tc.in.PerSecond || got.Burst > tc.in.Burst || unique(got.DailyUnique) > unique(tc.in.DailyUnique) {
				t.Errorf("stepDown(%+v) = %+v raises a limit", tc.in, got)
			}
		})
	}
}

// unique orders new-recipient limits: 0 is unlimited, above any number.
func unique(n int) float64 {
	if n == 0 {
		return float64(1 << 62)
	}
	return float64(n)
}

// testPolicy judges the figure over an hour of minute buckets, from 10 deliveries on:
// one report on 10 deliveries crosses its threshold.
var testPolicy = QualityPolicy{Threshold: 0.05, Window: time.Hour, MinDelivered: 10, Bucket: time.Minute}

// deliver counts n deliveries of the business's messages at t, as the status
// forwarder does (package delivery).
func deliver(t *testing.T, rdb *redis.Client, id string, at time.Time, n int64) {
	t.Helper()
	bucket := at.UnixMilli() / testPolicy.Bucket.Milliseconds()
	if err := rdb.HIncrBy(context.Background(), keys.Business(id).Quality(), "d:"+strconv.FormatInt(bucket, 10), n).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestQualityFigure: the figure counts deliveries and reports in the window and drops
// the buckets that left it.
func TestQualityFigure(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client)
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_000)
	biz := create(t, s, "Acme", now)

	deliver(t, rs.Client, biz, now.Add(-2*time.Hour), 1000) // long gone
	deliver(t, rs.Client, biz, now.Add(-testPolicy.Window), 500)
	deliver(t, rs.Client, biz, now.Add(-testPolicy.Window+testPolicy.Bucket), 30)
	deliver(t, rs.Client, biz, now, 10)
	for _, at := range []time.Time{now.Add(-90 * time.Minute), now.Add(-time.Minute), now} {
		if _, err := s.Report(ctx, biz, at, testPolicy); err != nil {
			t.Fatal(err)
		}
	}
	q, err := s.Quality(ctx, biz, now, testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if q.Delivered != 40 || q.Reports != 2 || q.Rate != 0.05 || !q.LastStepDown.IsZero() {
		t.Fatalf("Quality = %+v, want 40 delivered, 2 reports, rate 0.05, never stepped down", q)
	}
	if n := rs.Client.HLen(ctx, keys.Business(biz).Quality()).Val(); n != 4 {
		t.Fatalf("quality hash holds %d fields after reading, want the 4 counters in the window: %v",
			n, rs.Client.HGetAll(ctx, keys.Business(biz).Quality()).Val())
	}
	if q, _ := s.Quality(ctx, "biz_nobody", now, testPolicy); q != (Quality{}) {
		t.Fatalf("Quality of a business with no figure = %+v, want zero", q)
	}
}

// TestReportCrossing: a report steps the limits down only when the window holds enough
// deliveries and the rate is above the threshold.
func TestReportCrossing(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client)
	ctx := context.Background()
	now := time.Now()
	for _, tc := range []struct {
		name                    string
		old, delivered, reports int64
		want                    bool
	}{
		{"too few deliveries to judge", 0, 9, 9, false},
		{"too few deliveries in the window", 100, 9, 9, false},
		{"at the threshold", 0, 20, 1, false},
		{"above the threshold", 0, 20, 2, true},
		{"above the threshold in the window", 100, 20, 2, true},
		{"far above the threshold", 0, 10, 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			biz := create(t, s, "Acme", now)
			deliver(t, rs.Client, biz, now.Add(-testPolicy.Window), tc.old) // just out of the window
			deliver(t, rs.Client, biz, now, tc.delivered)
			var stepped bool
			for range tc.reports {
				ok, err := s.Report(ctx, biz, now, testPolicy)
				if err != nil {
					t.Fatal(err)
				}
				stepped = stepped || ok
			}
			b, _ := s.Get(ctx, biz)
			if stepped != tc.want || (b.Limits != DefaultLimits) != tc.want {
				t.Fatalf("%d reports of %d deliveries: stepped = %v, limits %+v; want stepped = %v",
					tc.reports, tc.delivered, stepped, b.Limits, tc.want)
			}
		})
	}
}

// TestReportStepsDownOncePerWindow: the report that crosses the threshold steps the
// limits down one tier; later reports in the same window do not; the next window may.
func TestReportStepsDownOncePerWindow(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client)
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_000)
	biz := create(t, s, "Acme", t0)
	start := Limits{PerSecond: 10, Burst: 20, DailyUnique: 0}
	if err := s.SetLimits(ctx, biz, start); err != nil {
		t.Fatal(err)
	}
	report := func(at time.Time) bool {
		t.Helper()
		ok, err := s.Report(ctx, biz, at, testPolicy)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	limits := func() Limits {
		t.Helper()
		b, err := s.Get(ctx, biz)
		if err != nil {
			t.Fatal(err)
		}
		return b.Limits
	}

	deliver(t, rs.Client, biz, t0, 10)
	if !report(t0) {
		t.Fatal("the report that crossed the threshold did not step down")
	}
	if l := limits(); l != stepDown(start) {
		t.Fatalf("limits after stepping down = %+v, want %+v", l, stepDown(start))
	}
	if q, _ := s.Quality(ctx, biz, t0, testPolicy); !q.LastStepDown.Equal(t0) {
		t.Fatalf("LastStepDown = %v, want %v", q.LastStepDown, t0)
	}
	if l, _ := s.Limits(ctx, biz, t0); l != stepDown(start) {
		t.Fatalf("cached limits on the stepping gateway = %+v, want %+v at once", l, stepDown(start))
	}
	for _, at := range []time.Time{t0, t0.Add(time.Minute), t0.Add(testPolicy.Window - time.Millisecond)} {
		if report(at) {
			t.Fatalf("stepped down again at %v, within the window of the first", at.Sub(t0))
		}
	}
	if l := limits(); l != stepDown(start) {
		t.Fatalf("limits = %+v after reports in the same window, want %+v", l, stepDown(start))
	}

	t1 := t0.Add(testPolicy.Window)
	deliver(t, rs.Client, biz, t1, 10)
	if !report(t1) {
		t.Fatal("a crossing in the next window did not step down")
	}
	if l := limits(); l != stepDown(stepDown(start)) {
		t.Fatalf("limits after the second step = %+v, want %+v", l, stepDown(stepDown(start)))
	}
}

// TestReportStepsDownAfterALeftoverLock: a marker left in the quality hash by a
// gateway that died while stepping down (older releases kept one) does not stop the
// next crossing from stepping down.
func TestReportStepsDownAfterALeftoverLock(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client)
	ctx := context.Background()
	now := time.Now()
	biz := create(t, s, "Acme", now)
	if err := rs.Client.HSet(ctx, keys.Business(biz).Quality(), "stepping", now.Add(-time.Hour).UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	deliver(t, rs.Client, biz, now, 10)
	if ok, err := s.Report(ctx, biz, now, testPolicy); err != nil || !ok {
		t.Fatalf("Report = %v, %v; want a step down", ok, err)
	}
	if b, _ := s.Get(ctx, biz); b.Limits != stepDown(DefaultLimits) {
		t.Fatalf("limits = %+v, want %+v", b.Limits, stepDown(DefaultLimits))
	}
}

// TestReportAtTheFloor: a crossing report on a business whose limits are already as
// low as a step goes changes nothing, and says so.
func TestReportAtTheFloor(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client)
	ctx := context.Background()
	now := time.Now()
	biz := create(t, s, "Acme", now)
	low := Limits{PerSecond: 0.5, Burst: 1, DailyUnique: 1_000}
	if err := s.SetLimits(ctx, biz, low); err != nil {
		t.Fatal(err)
	}
	deliver(t, rs.Client, biz, now, 10)
	if ok, err := s.Report(ctx, biz, now, testPolicy); err != nil || ok {
		t.Fatalf("Report = %v, %v; want no step down", ok, err)
	}
	if b, _ := s.Get(ctx, biz); b.Limits != low {
		t.Fatalf("limits = %+v, want them left at %+v", b.Limits, low)
	}
	if q, _ := s.Quality(ctx, biz, now, testPolicy); !q.LastStepDown.IsZero() {
		t.Fatalf("LastStepDown = %v after a step that changed nothing, want none", q.LastStepDown)
	}
}

// goneAfter lets a client do n commands (a pipeline counts as one, and so do those of
// its connection handshake) and fails every later one without sending it, with
// context.Canceled: the caller gave up, or the gateway died, at that point.
type goneAfter struct {
	mu sync.Mutex
	n  int
}

func (g *goneAfter) gone() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	return g.n < 0
}

func (g *goneAfter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *goneAfter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if g.gone() {
			cmd.SetErr(context.Canceled)
			return context.Canceled
		}
		return next(ctx, cmd)
	}
}

func (g *goneAfter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if g.gone() {
			for _, c := range cmds {
				c.SetErr(context.Canceled)
			}
			return context.Canceled
		}
		return next(ctx, cmds)
	}
}

// TestReportCutOffAtEveryStep: a crossing report whose caller goes away after any of
// its Redis commands either stepped down or left nothing that stops the next report
// from doing so; either way the limits step down exactly once.
func TestReportCutOffAtEveryStep(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client)
	ctx := context.Background()
	now := time.Now()
	for n := 0; ; n++ {
		if n > 20 {
			t.Fatal("Report did not finish within 20 commands")
		}
		biz := create(t, s, "Acme", now)
		deliver(t, rs.Client, biz, now, 10)
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
		rdb.AddHook(&goneAfter{n: n})
		_, err := New(rdb).Report(ctx, biz, now, testPolicy)
		rdb.Close()
		if err == nil {
			// The call finished within n commands: every cut-off point has been tried.
			if b, _ := s.Get(ctx, biz); b.Limits != stepDown(DefaultLimits) {
				t.Fatalf("limits after a finished crossing report = %+v, want %+v", b.Limits, stepDown(DefaultLimits))
			}
			return
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cut off after %d commands: %v, want context.Canceled", n, err)
		}
		if _, err := s.Report(ctx, biz, now, testPolicy); err != nil {
			t.Fatal(err)
		}
		if b, _ := s.Get(ctx, biz); b.Limits != stepDown(DefaultLimits) {
			t.Fatalf("cut off after %d commands, then reported again: limits %+v, want %+v (one step down)",
				n, b.Limits, stepDown(DefaultLimits))
		}
	}
}

// TestConcurrentReportsStepDownOnce: reports arriving together at several gateways
// step a business down once.
func TestConcurrentReportsStepDownOnce(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	now := time.Now()
	const gateways = 8
	stores := make([]*Store, gateways)
	for i := range stores {
		stores[i] = gateway(t, rs)
	}
	biz := create(t, stores[0], "Acme", now)
	deliver(t, rs.Client, biz, now, 10)

	var wg sync.WaitGroup
	stepped := make(chan bool, gateways)
	start := make(chan struct{})
	for _, s := range stores {
		wg.Go(func() {
			<-start
			ok, err := s.Report(ctx, biz, now, testPolicy)
			if err != nil {
				t.Error(err)
			}
			stepped <- ok
		})
	}
	close(start)
	wg.Wait()
	close(stepped)
	n := 0
	for ok := range stepped {
		if ok {
			n++
		}
	}
	b, _ := stores[0].Get(ctx, biz)
	if n != 1 || b.Limits != stepDown(DefaultLimits) {
		t.Fatalf("%d of %d gateways stepped down, limits %+v; want one, and %+v", n, gateways, b.Limits, stepDown(DefaultLimits))
	}
}
