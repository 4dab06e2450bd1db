package rscript_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/rscript"
	"github.com/redis/go-redis/v9"
)

// add adds ARGV[1] to KEYS[1] and echoes ARGV[2], so a caller can tell that its own
// call ran, and the counter that every call ran exactly once.
var add = rscript.New(`return {redis.call("INCRBY", KEYS[1], ARGV[1]), ARGV[2]}`)

// sub is a second script, for pipelines that mix scripts.
var sub = rscript.New(`return {redis.call("DECRBY", KEYS[1], ARGV[1]), ARGV[2]}`)

var fails = rscript.New(`return redis.error_reply("ERR refused on purpose")`)

// evalCounter counts the EVAL commands a client sends: the fallback after NOSCRIPT.
type evalCounter struct{ n atomic.Int64 }

func (c *evalCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *evalCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}

func (c *evalCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

func (c *evalCounter) count(cmd redis.Cmder) {
	if cmd.Name() == "eval" {
		c.n.Add(1)
	}
}

func client(t *testing.T) (*redis.Client, *evalCounter) {
	t.Helper()
	rs := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	t.Cleanup(func() { rdb.Close() })
	ec := &evalCounter{}
	rdb.AddHook(ec)
	return rdb, ec
}

// TestForgottenScriptIsSentAgain: after SCRIPT FLUSH a single call and a pipeline each
// send the source once and get their results; the next calls go by hash again.
func TestForgottenScriptIsSentAgain(t *testing.T) {
	t.Parallel()
	rdb, evals := client(t)
	ctx := context.Background()

	for round := range 2 {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		before := evals.n.Load()
		r, err := add.Run(ctx, rdb, []string{"single"}, 1, "a").Slice()
		if err != nil || r[0] != int64(round+1) || r[1] != "a" {
			t.Fatalf("round %d: Run = %v, %v", round, r, err)
		}
		if got := evals.n.Load() - before; got != 1 {
			t.Fatalf("round %d: Run sent the source %d times after a flush, want 1", round, got)
		}
		if _, err := add.Run(ctx, rdb, []string{"single"}, 0, "b").Result(); err != nil {
			t.Fatal(err)
		}
		if got := evals.n.Load() - before; got != 1 {
			t.Fatalf("round %d: a call after the script was loaded sent the source again", round)
		}

		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		before = evals.n.Load()
		cmds, err := rscript.Run(ctx, rdb, add, []rscript.Call{
			{Keys: []string{"piped"}, Args: []any{5, "x"}},
			{Script: sub, Keys: []string{"piped"}, Args: []any{2, "y"}},
			{Keys: []string{"piped"}, Args: []any{1, "z"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []int64{5, 3, 4}
		for i, c := range cmds {
			r, err := c.Slice()
			if err != nil || r[0] != want[i]+int64(4*round) {
				t.Fatalf("round %d: call %d = %v, %v; want %d", round, i, r, err, want[i]+int64(4*round))
			}
		}
		if got := evals.n.Load() - before; got != 3 {
			t.Fatalf("round %d: the pipeline sent %d sources after a flush, want 3 (one per call)", round, got)
		}
	}
}

// TestRunAfterSendsCommandsFirst: the plain commands go ahead of the calls in the same
// pipeline, and the calls see their writes even when Redis had forgotten the script.
func TestRunAfterSendsCommandsFirst(t *testing.T) {
	t.Parallel()
	rdb, _ := client(t)
	ctx := context.Background()
	read := rscript.New(`return redis.call("GET", KEYS[1])`)
	for _, flush := range []bool{false, true} {
		if flush {
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		var set *redis.StatusCmd
		cmds, err := rscript.RunAfter(ctx, rdb, func(p redis.Pipeliner) {
			set = p.Set(ctx, "k", fmt.Sprint("flushed=", flush), 0)
		}, read, []rscript.Call{{Keys: []string{"k"}}})
		if err != nil || set.Err() != nil {
			t.Fatalf("RunAfter = %v, SET = %v", err, set.Err())
		}
		if v, err := cmds[0].Text(); err != nil || v != fmt.Sprint("flushed=", flush) {
			t.Fatalf("the call read %q, %v; want the value set first", v, err)
		}
	}
}

// TestScriptErrorsAreResults: a script's error reply is its call's result, in a
// pipeline as alone, and the other calls still run.
func TestScriptErrorsAreResults(t *testing.T) {
	t.Parallel()
	rdb, _ := client(t)
	ctx := context.Background()
	if err := fails.Run(ctx, rdb, []string{"k"}).Err(); err == nil || err.Error() != "ERR refused on purpose" {
		t.Fatalf("Run = %v, want the script's error", err)
	}
	cmds, err := rscript.Run(ctx, rdb, add, []rscript.Call{
		{Script: fails, Keys: []string{"k"}},
		{Keys: []string{"k"}, Args: []any{1, "ok"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cmds[0].Err() == nil || cmds[1].Err() != nil {
		t.Fatalf("results = %v, %v", cmds[0].Err(), cmds[1].Err())
	}
}

// TestScriptFlushUnderTraffic: many goroutines call scripts, alone and pipelined,
// while another flushes the script cache in a loop. No call surfaces an error, every
// call gets its own result, and each ran exactly once (the counters add up).
func TestScriptFlushUnderTraffic(t *testing.T) {
	t.Parallel()
	rdb, evals := client(t)
	ctx := context.Background()
	const workers, rounds, batch = 8, 150, 4

	stop := make(chan struct{})
	flushed := make(chan int)
	go func() {
		n := 0
		defer func() { flushed <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Errorf("SCRIPT FLUSH: %v", err)
				return
			}
			n++
		}
	}()

	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("counter:%d", w)
			for r := range rounds {
				tag := strconv.Itoa(r)
				if w%2 == 0 {
					res, err := add.Run(ctx, rdb, []string{key}, 1, tag).Slice()
					if err != nil || res[1] != tag {
						t.Errorf("worker %d round %d: Run = %v, %v", w, r, res, err)
						return
					}
					continue
				}
				calls := make([]rscript.Call, batch)
				for i := range calls {
					calls[i] = rscript.Call{Keys: []string{key}, Args: []any{2, tag + "/" + strconv.Itoa(i)}}
				}
				// One call of another script, which adds back what it takes.
				calls[batch-1] = rscript.Call{Script: sub, Keys: []string{key}, Args: []any{1, tag + "/sub"}}
				cmds, err := rscript.Run(ctx, rdb, add, calls)
				if err != nil {
					t.Errorf("worker %d round %d: pipeline: %v", w, r, err)
					return
				}
				for i, c := range cmds {
					res, err := c.Slice()
					if err != nil || res[1] != calls[i].Args[1] {
						t.Errorf("worker %d round %d call %d = %v, %v", w, r, i, res, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	n := <-flushed
	if t.Failed() {
		return
	}
	for w := range workers {
		want := int64(rounds) // single calls add 1 a round
		if w%2 == 1 {
			want = int64(rounds * (2*(batch-1) - 1))
		}
		got, err := rdb.Get(ctx, fmt.Sprintf("counter:%d", w)).Int64()
		if err != nil || got != want {
			t.Fatalf("counter %d = %d, %v; want %d (a call ran twice or not at all)", w, got, err, want)
		}
	}
	t.Logf("%d flushes; %d calls resent their source", n, evals.n.Load())
}
