// Package phone parses phone numbers into E.164, the one spelling Herald keys
// recipients by, with libphonenumber's metadata (github.com/nyaruka/phonenumbers), so
// that "+1 (415) 555-0123" and "+14155550123" are the same person and numbers that
// cannot exist are refused.
//
// Parsing is the costliest step of a Send on the gateway (about 15 µs and 77
// allocations a number), and businesses send to the same numbers again and again, so
// the answers for recent spellings are remembered: two generations of at most
// cacheGeneration entries each, the older dropped when the newer fills, so memory is
// bounded whatever is thrown at it and a number in use stays.
package phone

import (
	"errors"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// ErrInvalid is returned for anything that is not a valid international number.
var ErrInvalid = errors.New("not a valid phone number in international (E.164) form, e.g. +14155550123")

// Parse returns number in E.164 form. The number must be international (start with +)
// and valid for its country's numbering plan.
func Parse(number string) (string, error) {
	n := strings.TrimSpace(number)
	if !strings.HasPrefix(n, "+") || len(n) > 32 {
		return "", ErrInvalid
	}
	if e164, ok := answers.get(n); ok {
		if e164 == "" {
			return "", ErrInvalid
		}
		return e164, nil
	}
	e164 := parse(n)
	answers.put(n, e164)
	if e164 == "" {
		return "", ErrInvalid
	}
	return e164, nil
}

// parse asks libphonenumber; "" for an invalid number.
func parse(n string) string {
	p, err := phonenumbers.Parse(n, "")
	if err != nil || !phonenumbers.IsValidNumber(p) {
		return ""
	}
	return phonenumbers.Format(p, phonenumbers.E164)
}

// cacheGeneration bounds each generation of remembered answers: two generations of
// short strings, a few MB at most.
const cacheGeneration = 1 << 15

var answers = &cache{cur: map[string]string{}, limit: cacheGeneration}

// cache remembers answers in two generations: lookups read both, writes go to the
// current one, and when it holds limit answers it becomes the old one and the old one
// is dropped. An answer found in the old generation is copied to the current one, so
// a number in use is never dropped with its generation.
type cache struct {
	mu       sync.RWMutex
	cur, old map[string]string
	limit    int
}

func (c *cache) get(k string) (string, bool) {
	c.mu.RLock()
	v, ok := c.cur[k]
	if ok {
		c.mu.RUnlock()
		return v, true
	}
	v, ok = c.old[k]
	c.mu.RUnlock()
	if ok {
		c.put(k, v)
	}
	return v, ok
}

func (c *cache) put(k, v string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur) >= c.limit {
		c.old, c.cur = c.cur, make(map[string]string, c.limit)
	}
	c.cur[k] = v
}
