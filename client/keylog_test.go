package client_test

import (
	"errors"
	"net"
	"testing"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/keylog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestLookupsAreProvenInTheKeyLog: a Business with WithKeyLog sends to keys the log
// proves; it refuses a lookup when a stored leaf was changed (the proof fails), when
// the log's history was rewritten (the new checkpoint does not extend the one it
// kept), and when the gateway gives no proofs at all.
func TestLookupsAreProvenInTheKeyLog(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	g := startGateway(t)
	b := g.business(nil, high, client.WithKeyLog(testLogPublicKey, nil), client.WithLookupTTL(0))
	g.device(nil, alice, e2e.X25519)
	g.device(nil, alice, e2e.MLKEM768X25519) // approved by the first
	if _, err := b.Lookup(ctx, alice, e2e.Transactional); err != nil {
		t.Fatalf("lookup with proofs: %v", err)
	}
	kept := b.KeyLogCheckpoint()
	if kept == nil {
		t.Fatal("no checkpoint kept")
	}
	if _, err := b.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("paid")); err != nil {
		t.Fatalf("send with proofs: %v", err)
	}

	// A business that starts again from the kept checkpoint accepts the log as it
	// grew meanwhile.
	g.device(nil, bob, e2e.X25519)
	b2 := g.business(nil, high, client.WithKeyLog(testLogPublicKey, kept), client.WithLookupTTL(0))
	if _, err := b2.Lookup(ctx, bob, e2e.Transactional); err != nil {
		t.Fatalf("lookup after the log grew: %v", err)
	}

	// Someone with Redis access changes a leaf (its time, so that the gateway still
	// serves it for that key): the proof of that key fails. (A changed key is not
	// served: the gateway logs the device's real key again, in plain sight.)
	leaves := g.rdb.LRange(ctx, keys.KeyLogLeaves(), 0, -1).Val()
	forged := []byte(leaves[0])
	forged[5] ^= 1 // version, kind, then the time's eight bytes
	if err := g.rdb.LSet(ctx, keys.KeyLogLeaves(), 0, forged).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lookup(ctx, alice, e2e.Transactional); !errors.Is(err, client.ErrKeyNotInLog) {
		t.Fatalf("lookup with a changed leaf = %v, want ErrKeyNotInLog", err)
	}
	if err := g.rdb.LSet(ctx, keys.KeyLogLeaves(), 0, leaves[0]).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lookup(ctx, alice, e2e.Transactional); err != nil {
		t.Fatalf("lookup with the leaf restored: %v", err)
	}
}

// TestARewrittenKeyLogIsRefused: the gateway's log is thrown away and rebuilt (as an
// operator hiding a key would): a Business that kept a checkpoint refuses every lookup
// against the new history.
func TestARewrittenKeyLogIsRefused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	g := startGateway(t)
	b := g.business(nil, high, client.WithKeyLog(testLogPublicKey, nil), client.WithLookupTTL(0))
	g.device(nil, alice, e2e.X25519)
	g.device(nil, bob, e2e.X25519)
	if _, err := b.Lookup(ctx, alice, e2e.Transactional); err != nil {
		t.Fatal(err)
	}
	// Drop the log and everyone's index of it; the next lookups log the keys again,
	// in another order: another history of the same size.
	for _, pattern := range []string{"hr:{kl}*", "hr:{u:*}:klog"} {
		for _, k := range g.rdb.Keys(ctx, pattern).Val() {
			g.rdb.Del(ctx, k)
		}
	}
	g2 := g.business(nil, high)
	if _, err := g2.Lookup(ctx, bob, e2e.Transactional); err != nil {
		t.Fatal(err)
	}
	_, err := b.Lookup(ctx, alice, e2e.Transactional)
	if !errors.Is(err, keylog.ErrInconsistent) {
		t.Fatalf("lookup against a rewritten log = %v, want ErrInconsistent", err)
	}
}

// TestAGatewayWithoutProofsIsRefused: a Business with WithKeyLog refuses the keys of a
// gateway that proves nothing (one run without the log, or one that strips proofs).
func TestAGatewayWithoutProofsIsRefused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	g := startGateway(t)
	g.device(nil, alice, e2e.X25519)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bare := &gateway{t: t, rs: g.rs, noLog: true}
	bare.serve(lis)
	t.Cleanup(bare.stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	b := g.business(conn, high, client.WithKeyLog(testLogPublicKey, nil))
	if _, err := b.Lookup(ctx, alice, e2e.Transactional); !errors.Is(err, client.ErrKeyNotInLog) {
		t.Fatalf("lookup without proofs = %v, want ErrKeyNotInLog", err)
	}
}
