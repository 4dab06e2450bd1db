package store

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/keylog"
)

// TestAStaleIntegratorNeverShrinksTheTree: a gateway that read the tree, stalled, and
// integrates after another gateway took the tree further writes the same nodes again
// and leaves the size where the other put it.
func TestAStaleIntegratorNeverShrinksTheTree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	skey, _, err := keylog.GenerateKey("herald.test/keylog")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := keylog.NewSigner(skey)
	l := New(srv.Client, signer)
	ev := func(i int) keylog.Event {
		return keylog.Event{Kind: keylog.BusinessKeyAdded, Owner: "acme", ID: "k" + string(rune('a'+i)),
			Algorithm: "ed25519", PublicKey: []byte{byte(i)}, Time: time.UnixMilli(int64(1000 + i))}
	}
	for i := range 3 {
		if _, err := l.AppendWithoutIntegrating(ctx, ev(i)); err != nil {
			t.Fatal(err)
		}
	}
	stale, err := l.state(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stale.size != 0 || len(stale.pending) != 3 {
		t.Fatalf("state: size %d, %d pending", stale.size, len(stale.pending))
	}
	if _, err := l.Append(ctx, ev(3)); err != nil {
		t.Fatal(err)
	}
	want, err := l.Checkpoint(ctx)
	if err != nil || want.Size != 4 {
		t.Fatalf("checkpoint: size %d, %v", want.Size, err)
	}

	size, _, err := l.integrate(ctx, stale, 3)
	if err != nil || size != 3 {
		t.Fatalf("the stale integration: size %d, %v", size, err)
	}
	if got := srv.Client.Get(ctx, keys.KeyLogSize()).Val(); got != "4" {
		t.Fatalf("stored size %s after the stale integration, want 4", got)
	}
	l.last.Store(nil) // sign afresh from what is stored
	got, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != 4 || string(got.Note) != string(want.Note) {
		t.Fatalf("checkpoint after the stale integration: %s, want %s", got.Note, want.Note)
	}
}
