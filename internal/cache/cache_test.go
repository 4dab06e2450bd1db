package cache

import (
	"errors"
	"testing"
	"time"
)

func TestGet(t *testing.T) {
	t.Parallel()
	c := New[string, int](time.Second)
	now := time.Now()
	loads := 0
	load := func(v int, err error) func() (int, error) {
		return func() (int, error) { loads++; return v, err }
	}
	if v, _ := c.Get("k", now, load(1, nil)); v != 1 || loads != 1 {
		t.Fatalf("first Get = %d after %d loads", v, loads)
	}
	if v, _ := c.Get("k", now.Add(999*time.Millisecond), load(2, nil)); v != 1 || loads != 1 {
		t.Fatalf("fresh Get = %d after %d loads, want the cached 1", v, loads)
	}
	// Stale: this caller reloads.
	if v, _ := c.Get("k", now.Add(time.Second), load(3, nil)); v != 3 || loads != 2 {
		t.Fatalf("stale Get = %d after %d loads, want a reload", v, loads)
	}
	// A failed load caches nothing.
	boom := errors.New("boom")
	if _, err := c.Get("x", now, load(0, boom)); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if v, _ := c.Get("x", now, load(4, nil)); v != 4 {
		t.Fatalf("after a failed load Get = %d, want a fresh load", v)
	}
	c.Forget("x")
	if v, _ := c.Get("x", now, load(5, nil)); v != 5 {
		t.Fatalf("after Forget Get = %d, want a fresh load", v)
	}
}

// TestOneRefreshAtATime: while one caller reloads a stale entry, others get the stale
// value for at most one more TTL.
func TestOneRefreshAtATime(t *testing.T) {
	t.Parallel()
	c := New[string, int](time.Second)
	now := time.Now()
	c.Get("k", now, func() (int, error) { return 1, nil })
	inside := make(chan struct{})
	release := make(chan struct{})
	done := make(chan int)
	go func() {
		v, _ := c.Get("k", now.Add(time.Second), func() (int, error) { close(inside); <-release; return 2, nil })
		done <- v
	}()
	<-inside
	if v, _ := c.Get("k", now.Add(1500*time.Millisecond), func() (int, error) { t.Error("second reload"); return 0, nil }); v != 1 {
		t.Fatalf("during the refresh Get = %d, want the stale 1", v)
	}
	if v, _ := c.Get("k", now.Add(2*time.Second), func() (int, error) { return 3, nil }); v != 3 {
		t.Fatalf("past 2×TTL Get = %d, want its own load", v)
	}
	close(release)
	if v := <-done; v != 2 {
		t.Fatalf("the refreshing caller got %d", v)
	}
}
