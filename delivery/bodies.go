package delivery

import "sync"

// bodyCache keeps recently delivered sealed bodies, so that a broadcast's body is read
// from Redis once per gateway rather than once per device. Bodies are immutable (named
// by their hash), so a cached body is never stale. Eviction is oldest-first once the
// cache holds more than limit bytes.
type bodyCache struct {
	mu    sync.Mutex
	limit int
	size  int
	items map[string][]byte
	order []string
}

func newBodyCache(limit int) *bodyCache {
	return &bodyCache{limit: limit, items: map[string][]byte{}}
}

func (c *bodyCache) get(h string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.items[h]
	return b, ok
}

func (c *bodyCache) put(h string, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[h]; ok || len(b) > c.limit {
		return
	}
	c.items[h] = b
	c.order = append(c.order, h)
	c.size += len(b)
	for c.size > c.limit && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		c.size -= len(c.items[old])
		delete(c.items, old)
	}
}
