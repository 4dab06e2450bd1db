package server

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Guesses at verification codes, per client address: each wrong or unknown code
// offered to RegisterDevice spends one of the address's tokens, which come back at
// guessRate up to guessBurst; an address with none left is refused before Redis is
// asked. Right codes spend nothing, so people registering from behind one address
// are not held back by each other. The per-number limit (delivery.CodeTries) is what
// bounds guessing at one number; this bounds what one client can try across numbers,
// on this gateway.
const (
	guessBurst = 10
	guessRate  = rate.Limit(1.0 / 6) // 10 a minute
	// maxGuessers bounds the addresses remembered; past it the table starts over
	// (only ever reached by a client cycling through addresses).
	maxGuessers = 100_000
)

// guesses holds each client address's token bucket of wrong guesses.
type guesses struct {
	mu    sync.Mutex
	peers map[string]*rate.Limiter
}

func newGuesses() *guesses { return &guesses{peers: map[string]*rate.Limiter{}} }

func (g *guesses) limiter(peer string) *rate.Limiter {
	l, ok := g.peers[peer]
	if !ok {
		if len(g.peers) >= maxGuessers {
			clear(g.peers)
		}
		l = rate.NewLimiter(guessRate, guessBurst)
		g.peers[peer] = l
	}
	return l
}

// allowed reports whether peer may guess now, and if not, when it may.
func (g *guesses) allowed(peer string, now time.Time) (bool, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.limiter(peer)
	if l.TokensAt(now) >= 1 {
		return true, 0
	}
	r := l.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, wait
}

// failed spends one of peer's tokens for a wrong guess.
func (g *guesses) failed(peer string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limiter(peer).AllowN(now, 1)
}
