// Package memstore is the in-process, Redis-compatible store that heraldd runs on in dev
// mode, so that the gateway starts on a machine that has only Go. It speaks the Redis
// protocol on a loopback port, so Herald talks to it exactly as to a real Redis, scripts
// included. It keeps everything in memory: data is lost on exit. It is for trying
// Herald out and for tests, never for production.
package memstore

import (
	"fmt"

	"github.com/alicebob/miniredis/v2"
)

// Store is a running in-process store.
type Store struct {
	m *miniredis.Miniredis
}

// Start starts a store on a free loopback port.
func Start() (*Store, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start in-process store: %w", err)
	}
	return &Store{m: m}, nil
}

// URL is the redis:// URL to connect to the store.
func (s *Store) URL() string { return "redis://" + s.m.Addr() }

// Addr is the store's host:port.
func (s *Store) Addr() string { return s.m.Addr() }

// Close stops the store and drops its data.
func (s *Store) Close() { s.m.Close() }
