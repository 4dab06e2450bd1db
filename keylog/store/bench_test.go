package store_test

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/keylog"
	"github.com/heraldhq/herald/keylog/store"
	"github.com/redis/go-redis/v9"
)

// benchLog is a log of size leaves on a store of its own, with a client whose round
// trips trips counts from the moment it returns.
func benchLog(b *testing.B, size int) (*store.Log, *counter) {
	b.Helper()
	ctx := context.Background()
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 1})
	b.Cleanup(func() { rdb.Close() })
	l := store.New(rdb, signer(b, logKey.skey))
	for i := range size {
		if _, err := l.Append(ctx, event(i)); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(ctx); err != nil { // loads the state script
		b.Fatal(err)
	}
	if _, err := l.Leaves(ctx, 0, 0); err != nil { // makes the pipeline's connection
		b.Fatal(err)
	}
	trips := &counter{}
	rdb.AddHook(trips)
	return l, trips
}

func reportTrips(b *testing.B, trips *counter) {
	b.ReportMetric(float64(trips.n.Load())/float64(b.N), "roundtrips/op")
}

func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	l, trips := benchLog(b, 1)
	events := make([]keylog.Event, b.N)
	for i := range events {
		events[i] = event(i + 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := l.Append(ctx, events[i]); err != nil {
			b.Fatal(err)
		}
	}
	reportTrips(b, trips)
}

const benchSize = 10_000

func BenchmarkInclusionProof10k(b *testing.B) {
	ctx := context.Background()
	l, trips := benchLog(b, benchSize)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := l.InclusionProof(ctx, uint64(i*7919%benchSize), benchSize); err != nil {
			b.Fatal(err)
		}
	}
	reportTrips(b, trips)
}

func BenchmarkConsistencyProof10k(b *testing.B) {
	ctx := context.Background()
	l, trips := benchLog(b, benchSize)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := l.ConsistencyProof(ctx, uint64(1+i*7919%(benchSize-1)), benchSize); err != nil {
			b.Fatal(err)
		}
	}
	reportTrips(b, trips)
}

// BenchmarkCheckpoint10k: the tree has not grown since the last checkpoint, the usual
// case on a lookup, so the signed note is handed out again.
func BenchmarkCheckpoint10k(b *testing.B) {
	ctx := context.Background()
	l, trips := benchLog(b, benchSize)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := l.Checkpoint(ctx); err != nil {
			b.Fatal(err)
		}
	}
	reportTrips(b, trips)
}
