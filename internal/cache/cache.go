// Package cache is the read-through cache the gateway keeps in front of Redis for
// things read on every call and changed rarely: API keys, device tokens, business
// limits and profiles.
//
// Guarantees: an entry is served for at most TTL after it was loaded; past that, one
// caller reloads it while the others may keep serving it for at most one more TTL, so
// a busy gateway asks Redis once per TTL, not once per caller, and a change in Redis
// is seen within 2×TTL. A failed load caches nothing.
package cache

import (
	"sync"
	"time"
)

// maxEntries bounds a cache; past it the cache starts over (cheaper than eviction
// bookkeeping, and only ever reached by callers cycling through bogus keys).
const maxEntries = 100_000

// Cache maps keys to values loaded from elsewhere. The zero value is not usable; use
// New. It is safe for concurrent use.
type Cache[K comparable, V any] struct {
	ttl     time.Duration
	mu      sync.Mutex
	entries map[K]entry[V]
}

type entry[V any] struct {
	v          V
	exp        time.Time
	refreshing bool // one caller is reloading it
}

// New returns a cache whose entries live ttl.
func New[K comparable, V any](ttl time.Duration) *Cache[K, V] {
	return &Cache[K, V]{ttl: ttl, entries: map[K]entry[V]{}}
}

// Get returns the value for k, loading it with load when it is missing or stale.
func (c *Cache[K, V]) Get(k K, now time.Time, load func() (V, error)) (V, error) {
	c.mu.Lock()
	e, ok := c.entries[k]
	switch {
	case ok && (now.Before(e.exp) || e.refreshing && now.Before(e.exp.Add(c.ttl))):
		c.mu.Unlock()
		return e.v, nil
	case ok:
		e.refreshing = true
		c.entries[k] = e
	}
	c.mu.Unlock()
	v, err := load()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		delete(c.entries, k)
		return v, err
	}
	if len(c.entries) >= maxEntries {
		clear(c.entries)
	}
	c.entries[k] = entry[V]{v: v, exp: now.Add(c.ttl)}
	return v, nil
}

// Forget drops k, so that the next Get loads it: for a change this gateway made.
func (c *Cache[K, V]) Forget(k K) {
	c.mu.Lock()
	delete(c.entries, k)
	c.mu.Unlock()
}
