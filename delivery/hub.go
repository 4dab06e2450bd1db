package delivery

import (
	"context"
	"log/slog"
	"sync"

	"github.com/redis/go-redis/v9"
)

// hub wakes the streams this gateway holds when Redis announces news on their
// channels. It holds ONE pub/sub connection for all of them, so Redis connections do
// not grow with connected devices; a channel is subscribed while at least one stream
// waits on it. go-redis resubscribes after a reconnect; notifications published while
// the connection was down are lost, which is why every waiting stream also polls
// slowly (WithPollInterval).
type hub struct {
	ps  *redis.PubSub
	log *slog.Logger
	mu  sync.Mutex
	// waiters per channel; each is a 1-buffered channel, so a burst of notifications
	// coalesces into one wake-up.
	waiters map[string]map[chan struct{}]struct{}
	done    chan struct{}
}

// newHub starts a hub on rdb; Close stops it.
func newHub(rdb redis.UniversalClient, log *slog.Logger) *hub {
	h := &hub{ps: rdb.Subscribe(context.Background()), log: log, waiters: map[string]map[chan struct{}]struct{}{}, done: make(chan struct{})}
	go h.run()
	return h
}

func (h *hub) run() {
	defer close(h.done)
	for m := range h.ps.Channel() {
		h.mu.Lock()
		for w := range h.waiters[m.Channel] {
			select {
			case w <- struct{}{}:
			default:
			}
		}
		h.mu.Unlock()
	}
}

// Watch returns a channel that receives a value after each announcement on channel,
// and a function to stop watching. If Redis cannot be reached the watch still works
// by polling alone, and the subscription is retried by the next Watch.
func (h *hub) Watch(ctx context.Context, channel string) (<-chan struct{}, func()) {
	w := make(chan struct{}, 1)
	h.mu.Lock()
	ws := h.waiters[channel]
	first := ws == nil
	if first {
		ws = map[chan struct{}]struct{}{}
		h.waiters[channel] = ws
	}
	ws[w] = struct{}{}
	h.mu.Unlock()
	if first {
		if err := h.ps.Subscribe(ctx, channel); err != nil {
			h.log.Warn("subscribe failed; the stream falls back to polling", "err", err)
			h.mu.Lock()
			// Forget the channel so the next Watch tries to subscribe again.
			if len(h.waiters[channel]) == 1 {
				delete(h.waiters, channel)
			}
			h.mu.Unlock()
		}
	}
	return w, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		ws := h.waiters[channel]
		delete(ws, w)
		if len(ws) == 0 && ws != nil {
			delete(h.waiters, channel)
			h.ps.Unsubscribe(context.Background(), channel)
		}
	}
}

// Close stops the hub.
func (h *hub) Close() error {
	err := h.ps.Close()
	<-h.done
	return err
}
