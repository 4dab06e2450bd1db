package rscript

import (
	"context"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Batcher runs many callers' RunAfter calls together, as group commit does for a
// log: a caller that finds fewer than its limit of pipelines out sends its own at once,
// so an idle gateway adds no wait; callers that arrive while the limit is out queue,
// and the next pipeline to come back takes the queued calls out in one pipeline (up
// to its limit of calls). Under load a Redis round trip then carries tens of
// admissions, which costs Redis about half the CPU per script that the same scripts
// cost one round trip each, and costs the gateway one write and one read for all.
//
// A caller with many calls of its own (a SendBatch of a hundred) gains nothing from
// company and would only wait for a place: its pipeline goes at once, beside the
// limit, as it would without a Batcher.
//
// What a caller is told is what RunAfter tells it, about its own calls only: a
// connection failure fails every call of the pipeline it was in (none of them can be
// assumed run or not run), and a script's error is its call's alone. A caller whose
// context ends while its calls wait in the queue is answered with the context's
// error at once, and its calls are never sent.
type Batcher struct {
	rdb   Pipeliner
	limit int // pipelines out at once
	most  int // script calls one pipeline takes from the queue (at least one caller's, whatever its size)
	alone int // script calls of one caller that go in a pipeline of their own at once

	mu    sync.Mutex
	out   int
	queue []*batchJob
}

// batchJob is one caller's RunAfter, waiting or out.
type batchJob struct {
	ctx   context.Context
	first func(redis.Pipeliner)
	calls []Call
	cmds  []*redis.Cmd
	err   error
	done  chan struct{}
}

// NewBatcher returns a Batcher on rdb with at most limit pipelines out at once (at
// least 1), each taking up to most queued script calls (at least 1); a caller with
// alone calls or more sends them at once in a pipeline of its own.
func NewBatcher(rdb Pipeliner, limit, most, alone int) *Batcher {
	return &Batcher{rdb: rdb, limit: max(limit, 1), most: max(most, 1), alone: max(alone, 1)}
}

// RunAfter is the package's RunAfter, with first's commands and the calls sent in a
// pipeline that may carry other callers' too. Each call's script is s unless the call
// names its own.
func (b *Batcher) RunAfter(ctx context.Context, first func(redis.Pipeliner), s *Script, calls []Call) ([]*redis.Cmd, error) {
	if len(calls) == 0 && first == nil {
		return nil, nil
	}
	if len(calls) >= b.alone {
		return RunAfter(ctx, b.rdb, first, s, calls)
	}
	own := make([]Call, len(calls))
	for i, c := range calls {
		own[i] = Call{Script: c.script(s), Keys: c.Keys, Args: c.Args}
	}
	j := &batchJob{ctx: ctx, first: first, calls: own}
	b.mu.Lock()
	if b.out < b.limit {
		b.out++
		b.mu.Unlock()
		b.send([]*batchJob{j})
		b.handOver()
		return j.cmds, j.err
	}
	j.done = make(chan struct{})
	b.queue = append(b.queue, j)
	b.mu.Unlock()
	select {
	case <-j.done:
	case <-ctx.Done():
		b.mu.Lock()
		if i := slices.Index(b.queue, j); i >= 0 {
			b.queue = slices.Delete(b.queue, i, i+1)
			b.mu.Unlock()
			return nil, ctx.Err()
		}
		b.mu.Unlock()
		<-j.done // taken out already: it is being sent
	}
	return j.cmds, j.err
}

// handOver is run by a caller whose pipeline came back: what queued meanwhile goes
// out from a goroutine of its own, so that the caller returns now; with nothing
// queued, the pipeline's place is given up.
func (b *Batcher) handOver() {
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.out--
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	go b.drain()
}

// drain sends queued calls, a pipeline at a time, until the queue is empty, holding
// one of the limit's places.
func (b *Batcher) drain() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.out--
			b.mu.Unlock()
			return
		}
		n, calls := 0, 0
		for n < len(b.queue) && (n == 0 || calls+len(b.queue[n].calls) <= b.most) {
			calls += len(b.queue[n].calls)
			n++
		}
		jobs := slices.Clone(b.queue[:n])
		b.queue = slices.Delete(b.queue, 0, n) // clears the tail: sent jobs are not kept
		b.mu.Unlock()
		b.send(jobs)
		for _, j := range jobs {
			close(j.done)
		}
	}
}

// send sends jobs in one pipeline and gives each its commands or the error. Jobs
// whose context ended while they waited are answered with that, unsent.
func (b *Batcher) send(jobs []*batchJob) {
	live := jobs[:0:0]
	for _, j := range jobs {
		if err := j.ctx.Err(); err != nil {
			j.err = err
			continue
		}
		live = append(live, j)
	}
	if len(live) == 0 {
		return
	}
	var calls []Call
	for _, j := range live {
		calls = append(calls, j.calls...)
	}
	first := func(p redis.Pipeliner) {
		for _, j := range live {
			if j.first != nil {
				j.first(p)
			}
		}
	}
	// The pipeline carries the first caller's context values (its trace, and what
	// a hook learns of the call it serves) but no caller's cancellation: one caller
	// giving up must not cut the others' round trip.
	ctx := context.WithoutCancel(live[0].ctx)
	cmds, err := RunAfter(ctx, b.rdb, first, nil, calls)
	for _, j := range live {
		if err != nil {
			j.err = err
			continue
		}
		j.cmds, cmds = cmds[:len(j.calls):len(j.calls)], cmds[len(j.calls):]
	}
}
