package main

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// group runs goroutines and keeps the first error, which cancels the others.
type group struct {
	wg     sync.WaitGroup
	once   sync.Once
	err    error
	cancel context.CancelFunc
}

func newGroup(ctx context.Context) (*group, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	return &group{cancel: cancel}, ctx
}

func (g *group) Go(f func() error) {
	g.wg.Go(func() {
		if err := f(); err != nil {
			g.once.Do(func() {
				g.err = err
				g.cancel()
			})
		}
	})
}

func (g *group) Wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}

// call is one call of a load: it returns how many messages the call carried.
type call func(ctx context.Context, caller int, seq int64) (int, error)

// loadResult is what a load did.
type loadResult struct {
	// messages is how many messages the calls that ended in the measured window
	// carried, and window its length: the throughput.
	messages int64
	window   time.Duration
	// latencies are those calls' latencies, sorted.
	latencies []time.Duration
	// all is how many messages every call carried, the warm-up's too, and counters
	// what the counters measured from before the first call until the work the calls
	// left in the background was done: the cost per message.
	all      int64
	counters window
}

// closedLoop keeps n callers each calling op back to back: first for a warm-up, then
// for the measured window of length dur. Throughput and latency are those of the
// calls that end in the window; the cost per message is that of all the calls,
// measured on srv and Redis from before the first until the background work they
// left was done (measured).
func (b *bench) closedLoop(ctx context.Context, srv server, n int, dur time.Duration, op call) (loadResult, error) {
	const (
		warming = iota
		open
		closed
	)
	var (
		phase atomic.Int32
		seq   atomic.Int64
		mu    sync.Mutex
		res   loadResult
	)
	var err error
	res.counters, err = b.measured(ctx, srv, func() error {
		g, gctx := newGroup(ctx)
		for c := range n {
			g.Go(func() error {
				var msgs, all int64
				var lat []time.Duration
				defer func() {
					mu.Lock()
					res.messages += msgs
					res.all += all
					res.latencies = append(res.latencies, lat...)
					mu.Unlock()
				}()
				for phase.Load() != closed && gctx.Err() == nil {
					start := time.Now()
					m, err := op(gctx, c, seq.Add(1)-1)
					if err != nil {
						return err
					}
					all += int64(m)
					if phase.Load() == open {
						msgs += int64(m)
						lat = append(lat, time.Since(start))
					}
				}
				return nil
			})
		}
		err := sleep(gctx, warmUp(dur))
		t0 := time.Now()
		phase.Store(open)
		if err == nil {
			err = sleep(gctx, dur)
		}
		res.window = time.Since(t0)
		phase.Store(closed)
		if werr := g.Wait(); werr != nil {
			return werr
		}
		return err
	})
	if err != nil {
		return loadResult{}, err
	}
	slices.Sort(res.latencies)
	return res, nil
}

// measured runs phase between two readings of the counters of srv and Redis, each
// taken once heraldd and Redis are quiet: the first, so that the phase inherits no
// work from what ran before; the second, so that it counts the work it left to the
// background (status events to forward, say), which can lag it by seconds.
func (b *bench) measured(ctx context.Context, srv server, phase func() error) (window, error) {
	if err := b.quiet(ctx); err != nil {
		return window{}, err
	}
	before, err := b.sample(ctx, srv)
	if err != nil {
		return window{}, err
	}
	if err := phase(); err != nil {
		return window{}, err
	}
	if err := b.quiet(ctx); err != nil {
		return window{}, err
	}
	after, err := b.sample(ctx, srv)
	if err != nil {
		return window{}, err
	}
	return before.to(after), nil
}

// warmUp is how long a load runs before it is measured: long enough for connection
// pools to fill and the first scripts to load.
func warmUp(dur time.Duration) time.Duration {
	return min(max(dur/8, 200*time.Millisecond), time.Second)
}

// paced makes calls at rate a second for dur, from workers goroutines. Call k has its
// turn at start + k/rate, and op is given it: a latency is measured from the turn, not
// from when a worker took the call, so a call that waited for a free worker counts
// the wait, as its caller would have (no coordinated omission). It returns the calls'
// latencies, sorted, once every call has ended.
func paced(ctx context.Context, workers int, rate float64, dur time.Duration, op func(ctx context.Context, k int64, turn time.Time) error) ([]time.Duration, error) {
	type job struct {
		k    int64
		turn time.Time
	}
	jobs := make(chan job)
	var (
		mu  sync.Mutex
		lat []time.Duration
	)
	g, gctx := newGroup(ctx)
	for range workers {
		g.Go(func() error {
			var mine []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for j := range jobs {
				if err := op(gctx, j.k, j.turn); err != nil {
					return err
				}
				mine = append(mine, time.Since(j.turn))
			}
			return nil
		})
	}
	start := time.Now()
dispatch:
	for k := int64(0); ; k++ {
		turn := start.Add(time.Duration(float64(k) * float64(time.Second) / rate))
		if turn.Sub(start) >= dur {
			break
		}
		if d := time.Until(turn); d > 0 {
			if sleep(gctx, d) != nil {
				break
			}
		}
		select {
		case jobs <- job{k, turn}:
		case <-gctx.Done():
			break dispatch
		}
	}
	close(jobs)
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.Sort(lat)
	return lat, nil
}

// sleep sleeps for d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// quantile is the q-quantile of sorted latencies (the smallest value at or above a
// fraction q of them); 0 when there are none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
