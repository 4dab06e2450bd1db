package rscript

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// echoAdd adds ARGV[1] to KEYS[1] and echoes ARGV[2], so that a caller can tell its
// own reply from another's in a shared pipeline.
var echoAdd = New(`return {redis.call("INCRBY", KEYS[1], ARGV[1]), ARGV[2]}`)

// gate holds the first pipeline a client sends until it is opened, and counts them
// (not a new connection's handshake, which go-redis sends as a pipeline too).
type gate struct {
	open      chan struct{}
	pipelines atomic.Int64
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		switch cmds[0].Name() {
		case "hello", "client", "auth", "select":
			return next(ctx, cmds) // a new connection's handshake
		}
		if g.pipelines.Add(1) == 1 {
			<-g.open
		}
		return next(ctx, cmds)
	}
}

func gatedClient(t *testing.T) (*redis.Client, *gate) {
	t.Helper()
	rs := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	t.Cleanup(func() { rdb.Close() })
	// Known to Redis beforehand, so that no pipeline is sent again as EVAL.
	if err := rdb.ScriptLoad(context.Background(), echoAdd.Source()).Err(); err != nil {
		t.Fatal(err)
	}
	g := &gate{open: make(chan struct{})}
	rdb.AddHook(g)
	return rdb, g
}

// waitQueued waits until n callers wait in b's queue.
func waitQueued(t *testing.T, b *Batcher, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		b.mu.Lock()
		q := len(b.queue)
		b.mu.Unlock()
		if q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers queued, want %d", q, n)
		}
	}
}

// TestBatcherSharesRoundTrips: callers that arrive while the pipeline is out wait and
// go out together in one pipeline, each with its own replies and its own first
// commands, and every call runs once.
func TestBatcherSharesRoundTrips(t *testing.T) {
	t.Parallel()
	rdb, g := gatedClient(t)
	ctx := context.Background()
	b := NewBatcher(rdb, 1, 1000, 1000)

	done := make(chan error, 1)
	go func() {
		_, err := b.RunAfter(ctx, nil, echoAdd, []Call{{Keys: []string{"n"}, Args: []any{1, "lead"}}})
		done <- err
	}()
	for g.pipelines.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	const callers = 40
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			var set *redis.StatusCmd
			first := func(p redis.Pipeliner) { set = p.Set(ctx, fmt.Sprintf("first:%d", i), i, 0) }
			cmds, err := b.RunAfter(ctx, first, echoAdd, []Call{
				{Keys: []string{"n"}, Args: []any{1, fmt.Sprintf("a%d", i)}},
				{Keys: []string{"n"}, Args: []any{1, fmt.Sprintf("b%d", i)}},
			})
			switch {
			case err != nil:
				errs[i] = err
			case len(cmds) != 2:
				errs[i] = fmt.Errorf("%d replies, want 2", len(cmds))
			case set.Err() != nil:
				errs[i] = fmt.Errorf("first command: %w", set.Err())
			default:
				for j, c := range cmds {
					r, err := c.Slice()
					if want := fmt.Sprintf("%c%d", 'a'+j, i); err != nil || r[1] != want {
						errs[i] = fmt.Errorf("reply %d = %v, %v; want the echo %s", j, r, err, want)
					}
				}
			}
		})
	}
	waitQueued(t, b, callers)
	close(g.open)
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if n := g.pipelines.Load(); n != 2 {
		t.Errorf("%d pipelines, want 2: the first caller's, and one for all %d that queued behind it", n, callers)
	}
	if n, _ := rdb.Get(ctx, "n").Int(); n != 1+2*callers {
		t.Errorf("counter %d, want %d: every call once", n, 1+2*callers)
	}
	for i := range callers {
		if v, _ := rdb.Get(ctx, fmt.Sprintf("first:%d", i)).Int(); v != i {
			t.Errorf("caller %d's first command wrote %d", i, v)
		}
	}
}

// TestBatcherTakesAtMostItsShare: a pipeline takes queued callers up to its number of
// calls (never splitting one caller's), and the rest go in the next.
func TestBatcherTakesAtMostItsShare(t *testing.T) {
	t.Parallel()
	rdb, g := gatedClient(t)
	ctx := context.Background()
	b := NewBatcher(rdb, 1, 10, 1000)
	go b.RunAfter(ctx, nil, echoAdd, []Call{{Keys: []string{"n"}, Args: []any{1, "lead"}}})
	for g.pipelines.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			calls := make([]Call, 4)
			for j := range calls {
				calls[j] = Call{Keys: []string{"n"}, Args: []any{1, fmt.Sprint(i)}}
			}
			if _, err := b.RunAfter(ctx, nil, echoAdd, calls); err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, b, 5)
	close(g.open)
	wg.Wait()
	// 5 callers of 4 calls, at most 10 calls a pipeline: 2 + 2 + 1 callers.
	if n := g.pipelines.Load(); n != 1+3 {
		t.Errorf("%d pipelines, want 4", n)
	}
	if n, _ := rdb.Get(ctx, "n").Int(); n != 21 {
		t.Errorf("counter %d, want 21", n)
	}
}

// TestBatcherDropsCallersThatGaveUp: a caller whose context ends while it waits is
// answered with the context's error, and its calls never reach Redis.
func TestBatcherDropsCallersThatGaveUp(t *testing.T) {
	t.Parallel()
	rdb, g := gatedClient(t)
	ctx := context.Background()
	b := NewBatcher(rdb, 1, 100, 1000)
	go b.RunAfter(ctx, nil, echoAdd, []Call{{Keys: []string{"lead"}, Args: []any{1, "lead"}}})
	for g.pipelines.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	gone, cancel := context.WithCancel(ctx)
	errc := make(chan error, 2)
	go func() {
		_, err := b.RunAfter(gone, nil, echoAdd, []Call{{Keys: []string{"gone"}, Args: []any{1, "gone"}}})
		errc <- err
	}()
	go func() {
		_, err := b.RunAfter(ctx, nil, echoAdd, []Call{{Keys: []string{"kept"}, Args: []any{1, "kept"}}})
		errc <- err
	}()
	waitQueued(t, b, 2)
	cancel()
	// Answered at once, while the pipeline ahead of it is still held.
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that gave up: %v, want context.Canceled", err)
	}
	waitQueued(t, b, 1)
	close(g.open)
	if err := <-errc; err != nil {
		t.Fatalf("the caller that waited: %v", err)
	}
	if n := rdb.Exists(ctx, "gone").Val(); n != 0 {
		t.Error("the call of a caller that gave up ran")
	}
	if n, _ := rdb.Get(ctx, "kept").Int(); n != 1 {
		t.Errorf("the waiting caller's call ran %d times, want 1", n)
	}
}

// TestBatcherAfterScriptFlush: a shared pipeline whose scripts Redis forgot is sent
// again by source, and each caller still gets its own replies.
func TestBatcherAfterScriptFlush(t *testing.T) {
	t.Parallel()
	rdb, g := gatedClient(t)
	close(g.open)
	ctx := context.Background()
	other := New(`return {redis.call("DECRBY", KEYS[1], ARGV[1]), ARGV[2]}`)
	b := NewBatcher(rdb, 2, 100, 1000)
	for round := range 3 {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				tag := fmt.Sprintf("%d.%d", round, i)
				cmds, err := b.RunAfter(ctx, nil, echoAdd, []Call{
					{Keys: []string{"up"}, Args: []any{1, tag}},
					{Script: other, Keys: []string{"down"}, Args: []any{1, tag}},
				})
				if err != nil {
					t.Error(err)
					return
				}
				for _, c := range cmds {
					if r, err := c.Slice(); err != nil || r[1] != tag {
						t.Errorf("caller %s: %v, %v", tag, r, err)
					}
				}
			})
		}
		wg.Wait()
	}
	up, _ := rdb.Get(ctx, "up").Int()
	down, _ := rdb.Get(ctx, "down").Int()
	if up != 60 || down != -60 {
		t.Fatalf("up %d, down %d; want 60 and -60", up, down)
	}
}

// TestBatcherLetsLargeCallersGoAlone: a caller with as many calls as the Batcher's
// alone goes at once, in a pipeline of its own, even while every place is taken.
func TestBatcherLetsLargeCallersGoAlone(t *testing.T) {
	t.Parallel()
	rdb, g := gatedClient(t)
	ctx := context.Background()
	b := NewBatcher(rdb, 1, 100, 3)
	lead := make(chan error, 1)
	go func() {
		_, err := b.RunAfter(ctx, nil, echoAdd, []Call{{Keys: []string{"n"}, Args: []any{1, "lead"}}})
		lead <- err
	}()
	for g.pipelines.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	calls := []Call{{Keys: []string{"big"}, Args: []any{1, "a"}}, {Keys: []string{"big"}, Args: []any{1, "b"}},
		{Keys: []string{"big"}, Args: []any{1, "c"}}}
	cmds, err := b.RunAfter(ctx, nil, echoAdd, calls) // returns while the lead is held
	if err != nil || len(cmds) != 3 {
		t.Fatalf("the large caller: %v, %v", cmds, err)
	}
	if r, _ := cmds[2].Slice(); r[0] != int64(3) || r[1] != "c" {
		t.Fatalf("the large caller's last reply: %v", r)
	}
	close(g.open)
	if err := <-lead; err != nil {
		t.Fatal(err)
	}
}

// TestBatcherErrorsAreTheirCallers: in a shared pipeline a script's error is its
// caller's alone, and a connection failure fails every caller of the pipeline.
func TestBatcherErrorsAreTheirCallers(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	failing := New(`return redis.error_reply("ERR refused on purpose")`)
	for _, src := range []string{echoAdd.Source(), failing.Source()} {
		if err := rdb.ScriptLoad(context.Background(), src).Err(); err != nil {
			t.Fatal(err)
		}
	}
	g := &gate{open: make(chan struct{})}
	rdb.AddHook(g)
	ctx := context.Background()
	b := NewBatcher(rdb, 1, 100, 1000)
	run := func(s *Script, tag string) chan error {
		errc := make(chan error, 1)
		go func() {
			cmds, err := b.RunAfter(ctx, nil, s, []Call{{Keys: []string{"n"}, Args: []any{1, tag}}})
			if err == nil {
				err = cmds[0].Err()
			}
			errc <- err
		}()
		return errc
	}
	lead := run(echoAdd, "lead")
	for g.pipelines.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	good, bad := run(echoAdd, "good"), run(failing, "bad")
	waitQueued(t, b, 2)
	close(g.open)
	if err := <-lead; err != nil {
		t.Fatal(err)
	}
	if err := <-good; err != nil {
		t.Fatalf("a good call beside a failing one: %v", err)
	}
	if err := <-bad; err == nil || !strings.Contains(err.Error(), "refused on purpose") {
		t.Fatalf("the failing call: %v", err)
	}

	// Redis gone: the pipeline out and the callers queued behind it all fail.
	g2 := &gate{open: make(chan struct{})}
	rdb.AddHook(g2)
	lead = run(echoAdd, "lead")
	for g2.pipelines.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	one, two := run(echoAdd, "one"), run(echoAdd, "two")
	waitQueued(t, b, 2)
	rs.Stop()
	close(g2.open)
	for i, c := range []chan error{lead, one, two} {
		if err := <-c; err == nil {
			t.Errorf("caller %d: no error with Redis gone", i)
		}
	}
}
