package delivery

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
	"github.com/redis/go-redis/v9"
)

var (
	//go:embed wake.lua
	wakeSource string
	//go:embed unpush.lua
	unpushSource string

	wakeScript   = rscript.New(wakeSource)
	unpushScript = rscript.New(unpushSource)
)

// Pusher sends a contentless wake-up through one push service (package push
// implements it): to is the device's address there.
type Pusher interface {
	Wake(ctx context.Context, to string) error
}

// ErrPushGone is what a Pusher's error wraps when the service no longer knows the
// address: the endpoint is forgotten. (push.ErrGone is wrapped as this by the
// gateway.)
var ErrPushGone = errors.New("the push endpoint is gone")

// Waker wakes devices that have a message waiting, no open Receive stream and a push
// endpoint: one contentless wake-up per device and wake interval, whichever gateway
// admitted the messages. Wake-ups are off the Send path: an admission only queues the
// recipient here, and a full queue drops it (the device still gets its messages when
// its app next opens Receive). Each push service has workers of its own, so a slow
// service delays only its own wake-ups. A wake-up that fails is tried again a few
// times with backoff; one the service says is gone removes the endpoint.
type Waker struct {
	rdb      redis.UniversalClient
	log      *slog.Logger
	interval time.Duration
	pushers  map[string]Pusher

	queue chan wakeRequest
	jobs  map[string]chan wakeJob // by service
	wg    sync.WaitGroup

	mu    sync.Mutex
	stats WakeStats
}

// WakeStats counts the wake-ups of a Waker, for metrics.
type WakeStats struct {
	Sent, Failed, Gone, Dropped int64
}

type wakeRequest struct {
	uid     string
	devices []string
}

type wakeJob struct {
	uid, device string
	endpoint    keys.PushEndpoint
}

// wakeQueue bounds the recipients waiting to be looked at, and each service's
// wake-ups waiting to be sent.
const wakeQueue = 4096

func newWaker(rdb redis.UniversalClient, log *slog.Logger, interval time.Duration, pushers map[string]Pusher) *Waker {
	w := &Waker{rdb: rdb, log: log, interval: interval, pushers: pushers, queue: make(chan wakeRequest, wakeQueue),
		jobs: map[string]chan wakeJob{}}
	for s := range pushers {
		w.jobs[s] = make(chan wakeJob, wakeQueue)
	}
	return w
}

// Admitted queues the devices of recipient uid that were just given a message, to be
// woken if they need it. It never blocks.
func (w *Waker) Admitted(uid string, devices []string) {
	if w == nil || len(w.pushers) == 0 || len(devices) == 0 {
		return
	}
	select {
	case w.queue <- wakeRequest{uid, devices}:
	default:
		w.count(func(s *WakeStats) { s.Dropped++ })
	}
}

// Stats returns the wake-up counts so far.
func (w *Waker) Stats() WakeStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

func (w *Waker) count(f func(*WakeStats)) {
	w.mu.Lock()
	f(&w.stats)
	w.mu.Unlock()
}

// run looks at queued recipients in batches, one pipelined round trip each, and hands
// the wake-ups to each service's workers, until ctx ends.
func (w *Waker) run(ctx context.Context) {
	if len(w.pushers) == 0 {
		return
	}
	for s, p := range w.pushers {
		for range 4 {
			w.wg.Go(func() { w.work(ctx, p, w.jobs[s]) })
		}
	}
	defer w.wg.Wait()
	for {
		var batch []wakeRequest
		select {
		case <-ctx.Done():
			return
		case r := <-w.queue:
			batch = append(batch, r)
		}
	more:
		for len(batch) < 256 {
			select {
			case r := <-w.queue:
				batch = append(batch, r)
			default:
				break more
			}
		}
		if err := w.look(ctx, batch); err != nil && ctx.Err() == nil {
			w.log.Warn("wake-ups: cannot look at devices; those messages wait for their apps", "err", err)
		}
	}
}

// look runs wake.lua for each recipient of batch and queues what it says to wake.
func (w *Waker) look(ctx context.Context, batch []wakeRequest) error {
	calls := make([]rscript.Call, len(batch))
	for i, r := range batch {
		u := keys.Recipient(r.uid)
		args := []any{u.Live(""), u.Woken(""), w.interval.Milliseconds()}
		for _, d := range r.devices {
			args = append(args, d)
		}
		calls[i] = rscript.Call{Keys: []string{u.PushEndpoints()}, Args: args}
	}
	cmds, err := rscript.Run(ctx, w.rdb, wakeScript, calls)
	if err != nil {
		return err
	}
	for i, c := range cmds {
		vals, err := c.StringSlice()
		if err != nil {
			continue
		}
		for j := 0; j+1 < len(vals); j += 2 {
			ep, err := keys.ParsePushEndpoint(vals[j+1])
			if err != nil {
				continue
			}
			q, ok := w.jobs[ep.Service]
			if !ok {
				continue // a service this gateway is not configured for
			}
			select {
			case q <- wakeJob{uid: batch[i].uid, device: vals[j], endpoint: ep}:
			default:
				w.count(func(s *WakeStats) { s.Dropped++ })
			}
		}
	}
	return nil
}

// wakeTries is how many times a wake-up is tried before it is given up.
const wakeTries = 3

// work sends the wake-ups of one service.
func (w *Waker) work(ctx context.Context, p Pusher, jobs <-chan wakeJob) {
	for {
		var j wakeJob
		select {
		case <-ctx.Done():
			return
		case j = <-jobs:
		}
		for try := range wakeTries {
			tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := p.Wake(tctx, j.endpoint.Address)
			cancel()
			switch {
			case err == nil:
				w.count(func(s *WakeStats) { s.Sent++ })
			case errors.Is(err, ErrPushGone):
				w.count(func(s *WakeStats) { s.Gone++ })
				u := keys.Recipient(j.uid)
				if err := unpushScript.Run(ctx, w.rdb, []string{u.PushEndpoints()}, j.device, j.endpoint.Encode()).Err(); err != nil {
					w.log.Warn("wake-ups: cannot forget a gone endpoint", "err", err)
				}
			default:
				w.count(func(s *WakeStats) { s.Failed++ })
				if try+1 < wakeTries && ctx.Err() == nil {
					select {
					case <-ctx.Done():
					case <-time.After(time.Duration(1<<try) * time.Second):
					}
					continue
				}
				w.log.Info("wake-up failed; the device gets its messages when its app opens", "service", j.endpoint.Service, "err", err)
			}
			break
		}
	}
}

// SetPushEndpoint makes ep where p's device is woken.
func (d *Devices) SetPushEndpoint(ctx context.Context, p Principal, ep keys.PushEndpoint) error {
	if err := d.rdb.HSet(ctx, keys.Recipient(p.UID).PushEndpoints(), p.DeviceID, ep.Encode()).Err(); err != nil {
		return fmt.Errorf("set push endpoint: %w", err)
	}
	return nil
}

// DeletePushEndpoint forgets p's device's push endpoint.
func (d *Devices) DeletePushEndpoint(ctx context.Context, p Principal) error {
	if err := d.rdb.HDel(ctx, keys.Recipient(p.UID).PushEndpoints(), p.DeviceID).Err(); err != nil {
		return fmt.Errorf("delete push endpoint: %w", err)
	}
	return nil
}
