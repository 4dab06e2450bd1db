package store_test

import (
	"context"
	"time"

	"github.com/heraldhq/herald/keylog"
	"github.com/heraldhq/herald/keylog/store"
	"github.com/redis/go-redis/v9"
)

// A gateway logs a device's new key and answers a lookup of it: the checkpoint, the
// leaf, and the leaf's inclusion proof in the checkpoint's tree.
func ExampleLog() {
	ctx := context.Background()
	signer, err := keylog.NewSigner("PRIVATE+KEY+…") // the log key, from the configuration
	if err != nil {
		panic(err)
	}
	l := store.New(redis.NewClient(&redis.Options{Addr: "localhost:6379"}), signer)

	index, err := l.Append(ctx, keylog.Event{Kind: keylog.DeviceKeyAdded, Owner: "abcdefghijklmnopqrstuvwxyz",
		ID: "phone_1", Algorithm: "x25519", PublicKey: make([]byte, 32), Time: time.Now()})
	if err != nil {
		panic(err)
	}

	// A lookup, later: the device checks all three with keylog.Verifier.
	c, err := l.Checkpoint(ctx)
	if err != nil {
		panic(err)
	}
	leaf, err := l.Leaf(ctx, index)
	if err != nil {
		panic(err)
	}
	proof, err := l.InclusionProof(ctx, index, c.Size)
	if err != nil {
		panic(err)
	}
	_, _, _ = c.Note, leaf, proof
}
