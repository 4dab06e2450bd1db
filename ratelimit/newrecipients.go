package ratelimit

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed newrecipients.lua
var newRecipientsSource string

var newRecipientsScript = redis.NewScript(newRecipientsSource)

// NewRecipients serves each business's new-recipient allowance — at most N people newly
// contacted per rolling window, across all gateways — from units this gateway leases
// from Redis in chunks, so that the allowance costs no round trip per message.
//
// The global state is a sorted set per business of leased units scored by lease time;
// a unit counts for one window from its lease. Units a gateway holds but has not used
// go back to Redis after UnitTTL, so an idle gateway strands at most one chunk for that
// long. Bound: over any window, people started ≤ N, exactly — a unit is counted from
// the moment it is leased, used or not, until it is handed back. A gateway that dies
// strands its unused units until their window passes (they count as used).
type NewRecipients struct {
	rdb redis.Scripter
	key func(business string) string
	now func() time.Time

	mu     sync.Mutex
	stocks map[string]*stock
}

// UnitTTL is how long a gateway keeps leased units before handing unused ones back.
var UnitTTL = 10 * time.Second

type stock struct {
	units  []unit
	inWait bool // a lease round trip is under way
}

type unit struct {
	id     string
	leased time.Time
}

// NewNewRecipients returns an allowance server on rdb; key names each business's set
// (it must carry the business's hash tag); now is the clock.
func NewNewRecipients(rdb redis.Scripter, key func(business string) string, now func() time.Time) *NewRecipients {
	return &NewRecipients{rdb: rdb, key: key, now: now, stocks: map[string]*stock{}}
}

// Units are units of allowance held by a caller. Each keeps the time it was leased:
// it counts in Redis from then, so it must go back (Sweep) before its window ends.
type Units []unit

// chunk is how many units one lease asks for: about 1% of the allowance, between
// 1 and 64, and at least what the caller needs now.
func chunk(limit, need int) int {
	return max(min(max(limit/100, 1), 64), need)
}

// Take gives up to n units from this gateway's stock, without a round trip. When the
// stock is running low it refills it in the background.
func (a *NewRecipients) Take(business string, limit int, window time.Duration, n int) Units {
	a.mu.Lock()
	st := a.stock(business)
	// A unit older than half its window is dropped rather than used: in Redis it may
	// soon stop counting. Dropping under-admits, never over-admits.
	cutoff := a.now().Add(-min(UnitTTL, window/2))
	fresh := st.units[:0]
	for _, u := range st.units {
		if !u.leased.Before(cutoff) {
			fresh = append(fresh, u)
		}
	}
	st.units = fresh
	k := min(n, len(st.units))
	out := make(Units, k)
	for i := range k {
		out[i] = st.units[len(st.units)-1-i]
	}
	st.units = st.units[:len(st.units)-k]
	refill := len(st.units) < chunk(limit, 0)/2+1 && !st.inWait
	if refill {
		st.inWait = true
	}
	a.mu.Unlock()
	if refill {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a.lease(ctx, business, limit, window, chunk(limit, 0), true)
		}()
	}
	return out
}

// Lease asks Redis for n units now (one round trip) for callers that found the stock
// empty. It returns the units granted and, if fewer than n, when the next frees up.
func (a *NewRecipients) Lease(ctx context.Context, business string, limit int, window time.Duration, n int) (Units, time.Duration, error) {
	return a.lease(ctx, business, limit, window, n, false)
}

func (a *NewRecipients) lease(ctx context.Context, business string, limit int, window time.Duration, n int, toStock bool) (Units, time.Duration, error) {
	if toStock {
		defer func() {
			a.mu.Lock()
			a.stock(business).inWait = false
			a.mu.Unlock()
		}()
	}
	id := leaseID()
	now := a.now()
	r, err := newRecipientsScript.Run(ctx, a.rdb, []string{a.key(business)}, now.UnixMilli(), window.Milliseconds(), limit, n, id).Int64Slice()
	if err != nil {
		return nil, 0, fmt.Errorf("lease new-recipient allowance: %w", err)
	}
	units := make(Units, r[0])
	for i := range units {
		units[i] = unit{id: fmt.Sprintf("%s:%d", id, i+1), leased: now}
	}
	retry := time.Duration(r[1]) * time.Millisecond
	if toStock {
		a.mu.Lock()
		st := a.stock(business)
		st.units = append(st.units, units...)
		a.mu.Unlock()
		return nil, retry, nil
	}
	return units, retry, nil
}

// Return puts units the caller did not use back in this gateway's stock.
func (a *NewRecipients) Return(business string, us Units) {
	if len(us) == 0 {
		return
	}
	a.mu.Lock()
	st := a.stock(business)
	st.units = append(st.units, us...)
	a.mu.Unlock()
}

func (a *NewRecipients) stock(business string) *stock {
	st := a.stocks[business]
	if st == nil {
		st = &stock{}
		a.stocks[business] = st
	}
	return st
}

// Sweep hands units older than UnitTTL back to Redis, so that a quiet gateway does
// not keep a business's allowance from the others. Run it every few seconds.
func (a *NewRecipients) Sweep(ctx context.Context, rdb redis.Cmdable) error {
	cutoff := a.now().Add(-UnitTTL)
	stale := map[string][]any{}
	a.mu.Lock()
	for b, st := range a.stocks {
		keep := st.units[:0]
		for _, u := range st.units {
			if u.leased.Before(cutoff) {
				stale[b] = append(stale[b], u.id)
			} else {
				keep = append(keep, u)
			}
		}
		st.units = keep
		if len(st.units) == 0 && !st.inWait {
			delete(a.stocks, b)
		}
	}
	a.mu.Unlock()
	for b, ids := range stale {
		if err := rdb.ZRem(ctx, a.key(b), ids...).Err(); err != nil {
			return fmt.Errorf("return new-recipient allowance: %w", err)
		}
	}
	return nil
}

func leaseID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
