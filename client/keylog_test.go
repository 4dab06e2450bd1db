package client_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
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

	// Someone with Redis access changes the leaf of alice's first device key (its
	// time, so that the gateway still serves it for that key): the proof of that key
	// fails. (A changed key is not served: the gateway logs the device's real key
	// again, in plain sight.)
	leaves := g.rdb.LRange(ctx, keys.KeyLogLeaves(), 0, -1).Val()
	at := slices.IndexFunc(leaves, func(l string) bool {
		e, err := keylog.Parse([]byte(l))
		return err == nil && e.Kind == keylog.DeviceKeyAdded
	})
	forged := []byte(leaves[at])
	forged[5] ^= 1 // version, kind, then the time's eight bytes
	if err := g.rdb.LSet(ctx, keys.KeyLogLeaves(), int64(at), forged).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lookup(ctx, alice, e2e.Transactional); !errors.Is(err, client.ErrKeyNotInLog) {
		t.Fatalf("lookup with a changed leaf = %v, want ErrKeyNotInLog", err)
	}
	if err := g.rdb.LSet(ctx, keys.KeyLogLeaves(), int64(at), leaves[at]).Err(); err != nil {
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
	bare.serve(lis, nil)
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

// TestForgedFirstContactIsRefused: someone with Redis access writes a business key of
// their own into a business's record, and has a message signed with it delivered to
// a person who never heard from the business. A device without a key log pins that
// key on first use and shows the message; a device with one refuses it, unopened and
// left queued, because no leaf of the log publishes the key. Messages under the key
// the business registered open on the same device.
func TestForgedFirstContactIsRefused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	g := startGateway(t)
	real, evil := newSigningKey(t), newSigningKey(t)
	b, apiKey := g.signingBusiness(real)
	careful := g.device(nil, alice, e2e.X25519, client.WithKeyLog(testLogPublicKey, nil))
	trusting := g.device(nil, bob, e2e.X25519)

	sendText(t, b, alice, "a real receipt")
	if got := readAll(t, careful, 1); got[0] != "a real receipt" {
		t.Fatalf("the careful device read %q", got)
	}
	// The careful device keeps the checkpoint it accepted.
	state, err := careful.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(state), "key_log_checkpoint") {
		t.Fatal("the device state keeps no key log checkpoint")
	}

	r := keys.BusinessRecord{CurrentSigningKey: e2e.KeyID(evil.PublicKey()), SigningKeys: map[string]keys.SigningKeyRecord{
		e2e.KeyID(evil.PublicKey()): {PublicKey: evil.PublicKey(), Origin: keys.SigningKeyFirst, State: keys.SigningKeyInUse}}}
	if err := g.rdb.HSet(ctx, keys.Business(b.ID()).Record(), r.Fields()...).Err(); err != nil {
		t.Fatal(err)
	}
	g.restart() // no gateway holds the record in its cache any more
	forger := client.NewBusiness(g.conn, b.ID(), apiKey, evil)

	// Without a key log, first use is trust: the forgery is shown.
	sendText(t, forger, bob, "your account is locked, call +1 555 0100")
	if got := readAll(t, trusting, 1); got[0] != "your account is locked, call +1 555 0100" {
		t.Fatalf("the trusting device read %q", got)
	}

	// With one, it is refused and stays queued, unopened, however often it comes.
	fresh := g.device(nil, "+14155550999", e2e.X25519, client.WithKeyLog(testLogPublicKey, nil))
	forged := sendText(t, forger, "+14155550999", "your account is locked, call +1 555 0100")
	for range 2 {
		r := receive(t, fresh, 1)[0]
		var nl *client.KeyNotInLogError
		if r.msg != nil || !errors.As(r.err, &nl) || nl.MessageID != forged {
			t.Fatalf("the careful device got %v, %v; want a *KeyNotInLogError", r.msg, r.err)
		}
	}
	if fresh.PinnedKey(b.ID()) != nil {
		t.Fatal("the careful device pinned the forged key")
	}
}

// proofRacer is a connection on which the first consistency proof a client asks for
// is answered only after run has run, as if another call of the same client had
// accepted the same checkpoint in the meantime.
type proofRacer struct {
	grpc.ClientConnInterface
	run  func()
	done bool
}

func (p *proofRacer) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if method == "/herald.v1.KeyLogService/GetConsistencyProof" && !p.done {
		p.done = true
		p.run()
	}
	return p.ClientConnInterface.Invoke(ctx, method, args, reply, opts...)
}

// TestConcurrentLookupsAcceptTheLogOnce: two lookups of one Business that see the same
// newer checkpoint both fetch the proof from the checkpoint they started from; the one
// that updates second must not take the other's update for a rewritten log.
func TestConcurrentLookupsAcceptTheLogOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	g := startGateway(t)
	racer := &proofRacer{ClientConnInterface: g.conn}
	b := g.business(racer, high, client.WithKeyLog(testLogPublicKey, nil), client.WithLookupTTL(0))
	g.device(nil, alice, e2e.X25519)
	if _, err := b.Lookup(ctx, alice, e2e.Transactional); err != nil {
		t.Fatal(err)
	}
	g.device(nil, bob, e2e.X25519) // the log grows
	var inner error
	racer.run = func() { _, inner = b.Lookup(ctx, bob, e2e.Transactional) }
	if _, err := b.Lookup(ctx, bob, e2e.Transactional); err != nil {
		t.Fatalf("the lookup whose proof was overtaken: %v", err)
	}
	if inner != nil {
		t.Fatalf("the lookup that overtook it: %v", inner)
	}
}
