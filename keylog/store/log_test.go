package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/keylog"
	"github.com/heraldhq/herald/keylog/store"
	"github.com/redis/go-redis/v9"
)

const origin = "herald.test/keylog"

// logKey is one log key for the whole suite: tests that need another make their own.
var logKey = func() struct{ skey, vkey string } {
	skey, vkey, err := keylog.GenerateKey(origin)
	if err != nil {
		panic(err)
	}
	return struct{ skey, vkey string }{skey, vkey}
}()

func signer(t testing.TB, skey string) *keylog.Signer {
	t.Helper()
	s, err := keylog.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newLog starts a store and returns the log in it, signed with the suite's key.
func newLog(t testing.TB) (*store.Log, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	return store.New(srv.Client, signer(t, logKey.skey)), srv
}

func newVerifier(t testing.TB, last []byte) *keylog.Verifier {
	t.Helper()
	v, err := keylog.NewVerifier(logKey.vkey, last)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var at = time.UnixMilli(1_767_225_600_000)

// event is the i-th event of a test history: device dev_<i> of one recipient added
// with its own key.
func event(i int) keylog.Event {
	key := sha256.Sum256([]byte(fmt.Sprint("key ", i)))
	return keylog.Event{Kind: keylog.DeviceKeyAdded, Owner: "abcdefghijklmnopqrstuvwxyz",
		ID: fmt.Sprintf("dev_%d", i), Algorithm: "x25519", PublicKey: key[:], Time: at.Add(time.Duration(i) * time.Millisecond)}
}

// forged is event i with the operator's key in place of the device's.
func forged(i int) keylog.Event {
	e := event(i)
	e.PublicKey = bytes.Repeat([]byte{0xee}, 32)
	return e
}

func encode(t testing.TB, e keylog.Event) []byte {
	t.Helper()
	leaf, err := keylog.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// grow appends events first, first+1, … until the log holds size leaves (events
// come from ev), and returns the signed checkpoint of every size it passed,
// including the one it started from.
func grow(t testing.TB, l *store.Log, size int, ev func(int) keylog.Event) map[int]keylog.Signed {
	t.Helper()
	ctx := context.Background()
	c, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]keylog.Signed{int(c.Size): c}
	for i := int(c.Size); i < size; i++ {
		index, err := l.Append(ctx, ev(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		if index != uint64(i) {
			t.Fatalf("Append %d: index %d", i, index)
		}
		if c, err = l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if c.Size != uint64(i+1) {
			t.Fatalf("after Append %d: checkpoint of size %d", i, c.Size)
		}
		seen[i+1] = c
	}
	return seen
}

// mth is RFC 6962's MTH, written out naively: the root the tree must have.
func mth(leaves [][]byte) []byte {
	switch len(leaves) {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		h := sha256.Sum256(append([]byte{0}, leaves[0]...))
		return h[:]
	}
	k := 1 << (bits.Len(uint(len(leaves)-1)) - 1)
	h := sha256.Sum256(append(append([]byte{1}, mth(leaves[:k])...), mth(leaves[k:])...))
	return h[:]
}

func TestEmptyLog(t *testing.T) {
	t.Parallel()
	l, _ := newLog(t)
	c, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 0 || !bytes.Equal(c.Root, keylog.EmptyRoot()) || c.Origin != origin {
		t.Fatalf("checkpoint of the empty log: %+v", c.Checkpoint)
	}
	if _, err := newVerifier(t, nil).Update(c.Note, nil); err != nil {
		t.Fatal(err)
	}
}

// TestInclusionAtEverySize: as the log grows to 70 leaves, each checkpoint has the
// root RFC 6962 defines, extends the one before by its consistency proof, and proves
// every leaf at every size up to it.
func TestInclusionAtEverySize(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := newLog(t)
	const n = 70
	var leaves [][]byte
	for i := range n {
		leaves = append(leaves, encode(t, event(i)))
	}
	cps := grow(t, l, n, event)
	v := newVerifier(t, nil)
	for size := 0; size <= n; size++ {
		c := cps[size]
		if !bytes.Equal(c.Root, mth(leaves[:size])) {
			t.Fatalf("size %d: root %x, want %x", size, c.Root, mth(leaves[:size]))
		}
		p, err := l.ConsistencyProof(ctx, uint64(max(size-1, 0)), uint64(size))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Update(c.Note, p); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		for i := range size {
			p, err := l.InclusionProof(ctx, uint64(i), uint64(size))
			if err != nil {
				t.Fatalf("size %d, leaf %d: %v", size, i, err)
			}
			leaf, err := l.Leaf(ctx, uint64(i))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(leaf, leaves[i]) {
				t.Fatalf("leaf %d is not what was appended", i)
			}
			e, err := v.VerifyInclusion(c.Checkpoint, uint64(i), leaf, p)
			if err != nil {
				t.Fatalf("size %d, leaf %d: %v", size, i, err)
			}
			if e.ID != event(i).ID || !bytes.Equal(e.PublicKey, event(i).PublicKey) {
				t.Fatalf("leaf %d records %v", i, e)
			}
		}
	}
}

// TestConsistencyBetweenEverySize: a verifier that kept the checkpoint of any size
// up to 40 accepts the checkpoint of any larger size with the log's proof, and then
// still accepts the smaller one (the proof shows it is a prefix).
func TestConsistencyBetweenEverySize(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := newLog(t)
	const n = 40
	cps := grow(t, l, n, event)
	for old := 0; old <= n; old++ {
		for cur := old; cur <= n; cur++ {
			p, err := l.ConsistencyProof(ctx, uint64(old), uint64(cur))
			if err != nil {
				t.Fatal(err)
			}
			v := newVerifier(t, cps[old].Note)
			if _, err := v.Update(cps[cur].Note, p); err != nil {
				t.Fatalf("%d -> %d: %v", old, cur, err)
			}
			if _, err := v.Update(cps[old].Note, p); err != nil {
				t.Fatalf("%d after %d: %v", old, cur, err)
			}
			if last, _ := v.Last(); last.Size != uint64(cur) {
				t.Fatalf("%d, %d: newest is %d", old, cur, last.Size)
			}
		}
	}
}

// TestConcurrentAppends: gateways, each with its own connection, append at once while
// a device keeps checking checkpoints. No leaf is lost or doubled, each lands at the
// index its Append returned, every checkpoint the device saw extends the one before,
// and the final tree proves every leaf.
func TestConcurrentAppends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	const gateways, workers, each = 3, 4, 15
	const total = gateways * workers * each
	logs := make([]*store.Log, gateways)
	for g := range logs {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
		t.Cleanup(func() { rdb.Close() })
		logs[g] = store.New(rdb, signer(t, logKey.skey))
	}

	v := newVerifier(t, nil)
	done := make(chan struct{})
	watched := make(chan error, 1)
	go func() { // a device, checking each checkpoint it is shown against the last
		var checked int
		for {
			select {
			case <-done:
				if checked == 0 {
					watched <- errors.New("the device checked no checkpoint")
				}
				close(watched)
				return
			default:
			}
			last, _ := v.Last()
			c, err := logs[0].Checkpoint(ctx)
			if err == nil {
				var p [][]byte
				if p, err = logs[1].ConsistencyProof(ctx, min(last.Size, c.Size), max(last.Size, c.Size)); err == nil {
					_, err = v.Update(c.Note, p)
				}
			}
			if err != nil {
				watched <- err
				close(watched)
				return
			}
			checked++
		}
	}()

	var mu sync.Mutex
	byIndex := map[uint64]keylog.Event{}
	var wg sync.WaitGroup
	errs := make(chan error, gateways*workers)
	for g := range gateways {
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					e := event(0)
					e.ID = fmt.Sprintf("g%d_w%d_%d", g, w, i)
					index, err := logs[g].Append(ctx, e)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					prev, dup := byIndex[index]
					byIndex[index] = e
					mu.Unlock()
					if dup {
						errs <- fmt.Errorf("index %d returned for %s and %s", index, prev.ID, e.ID)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(done)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := <-watched; err != nil {
		t.Fatalf("the device refused a checkpoint during the appends: %v", err)
	}
	if len(byIndex) != total {
		t.Fatalf("%d distinct indexes for %d appends", len(byIndex), total)
	}

	c, err := logs[2].Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != total {
		t.Fatalf("checkpoint of size %d after %d appends", c.Size, total)
	}
	// An auditor replays the log and finds the checkpoint's root.
	leaves, err := logs[1].Leaves(ctx, 0, total)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mth(leaves), c.Root) {
		t.Fatal("the leaves do not hash to the checkpoint's root")
	}
	last, _ := v.Last()
	p, err := logs[0].ConsistencyProof(ctx, last.Size, c.Size)
	if err != nil {
		t.Fatal(err)
	}
	if c2, err := v.Update(c.Note, p); err != nil {
		t.Fatal(err)
	} else {
		c = keylog.Signed{Checkpoint: c2, Note: c.Note}
	}
	for i := range uint64(total) {
		want := encode(t, byIndex[i])
		if !bytes.Equal(leaves[i], want) {
			t.Fatalf("leaf %d is not the event appended at %d", i, i)
		}
		p, err := logs[i%gateways].InclusionProof(ctx, i, c.Size)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.VerifyInclusion(c.Checkpoint, i, leaves[i], p); err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
	}
}

// TestLeavesOfADeadGatewayJoinTheTree: a gateway that pushed its leaf and died before
// storing the tree's nodes leaves it out of the tree until the next Checkpoint or
// Append of any gateway puts it in, however many there are.
func TestLeavesOfADeadGatewayJoinTheTree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, srv := newLog(t)
	var leaves [][]byte
	appendDead := func(n int) {
		for range n {
			i := len(leaves)
			if _, err := l.AppendWithoutIntegrating(ctx, event(i)); err != nil {
				t.Fatal(err)
			}
			leaves = append(leaves, encode(t, event(i)))
		}
	}
	appendDead(3)
	c, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 3 || !bytes.Equal(c.Root, mth(leaves)) {
		t.Fatalf("checkpoint of size %d, want 3 with its root", c.Size)
	}
	appendDead(2)
	if _, err := l.Append(ctx, event(len(leaves))); err != nil {
		t.Fatal(err)
	}
	leaves = append(leaves, encode(t, event(len(leaves))))
	if _, err := l.InclusionProof(ctx, 5, 6); err != nil {
		t.Fatalf("the leaf of the live gateway: %v", err)
	}
	// More than one state reply carries, integrated in rounds. Pushed as the append
	// script pushes them (1100 script calls that each answer every leaf pending
	// before them take long on the in-process store).
	pipe := srv.Client.Pipeline()
	for range 1100 {
		leaf := encode(t, event(len(leaves)))
		key, off := keys.KeyLogNode(0, uint64(len(leaves)))
		pipe.RPush(ctx, keys.KeyLogLeaves(), leaf)
		pipe.SetRange(ctx, key, off, string(keylog.LeafHash(leaf)))
		leaves = append(leaves, leaf)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err = l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Size != uint64(len(leaves)) || !bytes.Equal(c.Root, mth(leaves)) {
		t.Fatalf("checkpoint of size %d, want %d with its root", c.Size, len(leaves))
	}
	v := newVerifier(t, c.Note)
	for _, i := range []uint64{0, 4, 5, 1023, 1105} {
		p, err := l.InclusionProof(ctx, i, c.Size)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.VerifyInclusion(c.Checkpoint, i, leaves[i], p); err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
	}
}

// TestAChangedLeafIsNotIncluded: whoever edits a stored leaf (to swap in their key)
// changes what Leaf returns but not the tree, so the leaf fails its proof, against
// the checkpoint from before the edit and against one made after.
func TestAChangedLeafIsNotIncluded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, srv := newLog(t)
	before := grow(t, l, 10, event)[10]
	v := newVerifier(t, before.Note)
	if err := srv.Client.LSet(ctx, keys.KeyLogLeaves(), 4, encode(t, forged(4))).Err(); err != nil {
		t.Fatal(err)
	}
	leaf, err := l.Leaf(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(leaf, encode(t, forged(4))) {
		t.Fatal("the edit did not take")
	}
	after, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []keylog.Signed{before, after} {
		c, err := v.Update(c.Note, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := l.InclusionProof(ctx, 4, 10)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.VerifyInclusion(c, 4, leaf, p); !errors.Is(err, keylog.ErrNotIncluded) {
			t.Fatalf("the edited leaf: %v, want ErrNotIncluded", err)
		}
	}
}

// TestAChangedNodeFailsTheProofs: whoever edits a stored node breaks every inclusion
// proof through it; an edit under the root changes the root, which a device that kept
// a checkpoint refuses, at the same size and at every later one.
func TestAChangedNodeFailsTheProofs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, srv := newLog(t)
	const n = 21 // 16 + 4 + 1: the subtrees (4, 0), (2, 4) and leaf 20
	c := grow(t, l, n, event)[n]
	v := newVerifier(t, c.Note)
	edit := func(level uint, index uint64) {
		t.Helper()
		key, off := keys.KeyLogNode(level, index)
		if err := srv.Client.SetRange(ctx, key, off, string(bytes.Repeat([]byte{0xee}, 32))).Err(); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(i uint64) error {
		t.Helper()
		p, err := l.InclusionProof(ctx, i, n)
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.VerifyInclusion(c.Checkpoint, i, encode(t, event(int(i))), p)
		return err
	}

	// Node (1, 2), over leaves 4 and 5, is in the proofs of leaves 6 and 7 only.
	edit(1, 2)
	for i := range uint64(n) {
		err := verify(i)
		if through := i == 6 || i == 7; through != errors.Is(err, keylog.ErrNotIncluded) {
			t.Errorf("leaf %d after editing node (1, 2): %v", i, err)
		}
	}

	// Node (4, 0) is part of the root: the same size now has another root.
	edit(4, 0)
	again, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again.Size != n || bytes.Equal(again.Root, c.Root) {
		t.Fatalf("after editing the root's subtree: size %d, same root %v", again.Size, bytes.Equal(again.Root, c.Root))
	}
	if _, err := v.Update(again.Note, nil); !errors.Is(err, keylog.ErrInconsistent) {
		t.Fatalf("the same size with another root: %v, want ErrInconsistent", err)
	}
	later := grow(t, l, n+3, event)[n+3]
	p, err := l.ConsistencyProof(ctx, n, n+3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Update(later.Note, p); !errors.Is(err, keylog.ErrInconsistent) {
		t.Fatalf("a later checkpoint over the edited node: %v, want ErrInconsistent", err)
	}
}

// TestARewrittenHistoryIsRefused: an operator keeps a second log, the same but for
// one leaf (its own key for a device), and shows it to a device that kept a checkpoint
// of the first. The device refuses it, at the same size and once it has grown, and
// keeps the two signed notes as evidence; the honest log's growth it accepts.
func TestARewrittenHistoryIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const n, k = 20, 7
	honest, _ := newLog(t)
	rewritten, _ := newLog(t)
	seen := grow(t, honest, n, event)[n]
	shown := grow(t, rewritten, n, func(i int) keylog.Event {
		if i == k {
			return forged(i)
		}
		return event(i)
	})[n]
	v := newVerifier(t, seen.Note)

	_, err := v.Update(shown.Note, nil)
	var ce *keylog.ConsistencyError
	if !errors.As(err, &ce) || !errors.Is(err, keylog.ErrInconsistent) {
		t.Fatalf("the rewritten log at the same size: %v, want a ConsistencyError", err)
	}
	// The evidence stands on its own: two notes the log signed, one size, two roots.
	a, errA := v.Open(ce.Seen)
	b, errB := v.Open(ce.Shown)
	if errA != nil || errB != nil || a.Size != b.Size || bytes.Equal(a.Root, b.Root) {
		t.Fatalf("evidence: %+v (%v), %+v (%v)", a, errA, b, errB)
	}

	shownLater := grow(t, rewritten, n+5, forged)[n+5]
	p, err := rewritten.ConsistencyProof(ctx, n, n+5)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Update(shownLater.Note, p); !errors.Is(err, keylog.ErrInconsistent) {
		t.Fatalf("the rewritten log, grown: %v, want ErrInconsistent", err)
	}

	seenLater := grow(t, honest, n+5, event)[n+5]
	if p, err = honest.ConsistencyProof(ctx, n, n+5); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Update(seenLater.Note, p); err != nil {
		t.Fatalf("the honest log, grown: %v", err)
	}
	if last, _ := v.Last(); !bytes.Equal(last.Note, seenLater.Note) {
		t.Fatal("the verifier did not move to the honest log's newer checkpoint")
	}
}

func TestACheckpointSignedByAnotherKeyIsRefused(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	skey, _, err := keylog.GenerateKey(origin) // the same name, another key
	if err != nil {
		t.Fatal(err)
	}
	impostor := store.New(srv.Client, signer(t, skey))
	c := grow(t, impostor, 3, event)[3]
	if _, err := newVerifier(t, nil).Update(c.Note, nil); !errors.Is(err, keylog.ErrBadSignature) {
		t.Fatalf("Update: %v, want ErrBadSignature", err)
	}
}

// TestASmallerCheckpointMustBeAPrefix: a device that has seen size 30 is shown a
// checkpoint of size 12, as a gateway behind a stale cache might show it. It accepts
// it only with the proof that it is a prefix of what it saw, and keeps size 30.
func TestASmallerCheckpointMustBeAPrefix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	honest, _ := newLog(t)
	cps := grow(t, honest, 30, event)
	v := newVerifier(t, cps[30].Note)

	p, err := honest.ConsistencyProof(ctx, 12, 30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Update(cps[12].Note, p); err != nil {
		t.Fatalf("the honest prefix: %v", err)
	}
	if _, err := v.Update(cps[12].Note, nil); !errors.Is(err, keylog.ErrInconsistent) {
		t.Fatalf("a smaller checkpoint without proof: %v, want ErrInconsistent", err)
	}

	forkedLog, _ := newLog(t)
	forkedCps := grow(t, forkedLog, 30, func(i int) keylog.Event {
		if i == 3 {
			return forged(i)
		}
		return event(i)
	})
	forkedProof, err := forkedLog.ConsistencyProof(ctx, 12, 30)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string][][]byte{"honest proof": p, "its own proof": forkedProof} {
		if _, err := v.Update(forkedCps[12].Note, p); !errors.Is(err, keylog.ErrInconsistent) {
			t.Errorf("a forked smaller checkpoint with the %s: %v, want ErrInconsistent", name, err)
		}
	}
	if last, _ := v.Last(); last.Size != 30 || !bytes.Equal(last.Note, cps[30].Note) {
		t.Fatalf("newest is size %d", last.Size)
	}
}

func TestOutOfRangeAndCorrupt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, srv := newLog(t)
	grow(t, l, 5, event)
	outOfRange := map[string]func() error{
		"leaf index = size":         func() error { _, err := l.InclusionProof(ctx, 5, 5); return err },
		"size beyond the tree":      func() error { _, err := l.InclusionProof(ctx, 0, 6); return err },
		"old above new":             func() error { _, err := l.ConsistencyProof(ctx, 3, 2); return err },
		"new beyond the tree":       func() error { _, err := l.ConsistencyProof(ctx, 1, 6); return err },
		"leaf beyond the tree":      func() error { _, err := l.Leaf(ctx, 5); return err },
		"leaves beyond the tree":    func() error { _, err := l.Leaves(ctx, 3, 6); return err },
		"leaves from after to":      func() error { _, err := l.Leaves(ctx, 3, 2); return err },
		"empty range past the tree": func() error { _, err := l.Leaves(ctx, 7, 7); return err },
	}
	for name, f := range outOfRange {
		if err := f(); !errors.Is(err, store.ErrOutOfRange) {
			t.Errorf("%s: %v, want ErrOutOfRange", name, err)
		}
	}
	if got, err := l.Leaves(ctx, 5, 5); err != nil || len(got) != 0 {
		t.Errorf("Leaves(5, 5) = %d leaves, %v", len(got), err)
	}

	bad := event(5)
	bad.Owner = "+15551234567"
	if _, err := l.Append(ctx, bad); !errors.Is(err, keylog.ErrMalformed) {
		t.Errorf("Append of a phone number: %v, want ErrMalformed", err)
	}
	if n := srv.Client.LLen(ctx, keys.KeyLogLeaves()).Val(); n != 5 {
		t.Errorf("a refused event was appended: %d leaves", n)
	}

	key, _ := keys.KeyLogNode(0, 0)
	srv.Client.Del(ctx, key)
	if _, err := l.InclusionProof(ctx, 0, 5); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("proof over lost leaf hashes: %v, want ErrCorrupt", err)
	}
}

// TestRoundTrips holds the costs the package doc states: a proof is one round trip,
// a checkpoint of a tree with nothing pending one, an uncontended append two.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	// One connection, so that what is counted is the log's traffic and never the
	// handshake of a new connection.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 1})
	t.Cleanup(func() { rdb.Close() })
	l := store.New(rdb, signer(t, logKey.skey))
	// Load every script, and make the connection that go-redis dials afresh for the
	// first pipeline.
	grow(t, l, 40, event)
	if _, err := l.Leaves(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	var trips counter
	rdb.AddHook(&trips)
	cost := func(what string, want int64, f func() error) {
		t.Helper()
		before := trips.n.Load()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		if got := trips.n.Load() - before; got != want {
			t.Errorf("%s: %d round trips, want %d", what, got, want)
		}
	}
	cost("Append", 2, func() error { _, err := l.Append(ctx, event(40)); return err })
	cost("Checkpoint", 1, func() error { _, err := l.Checkpoint(ctx); return err })
	cost("InclusionProof", 1, func() error { _, err := l.InclusionProof(ctx, 17, 41); return err })
	cost("ConsistencyProof", 1, func() error { _, err := l.ConsistencyProof(ctx, 13, 41); return err })
	cost("Leaves", 1, func() error { _, err := l.Leaves(ctx, 3, 30); return err })
}

// TestOnRedisCluster: the scripts' keys, declared and built, are on one slot.
func TestOnRedisCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl := redistest.StartCluster(t)
	l := store.New(cl.Client, signer(t, logKey.skey))
	c := grow(t, l, 20, event)[20]
	v := newVerifier(t, c.Note)
	for i := range uint64(20) {
		p, err := l.InclusionProof(ctx, i, 20)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.VerifyInclusion(c.Checkpoint, i, encode(t, event(int(i))), p); err != nil {
			t.Fatal(err)
		}
	}
}

// counter counts round trips to Redis: each command sent alone, and each pipeline.
type counter struct{ n atomic.Int64 }

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestBatchesMatchSingleReads: LeavesAt and InclusionProofs return, in one round trip
// each, what Leaf and InclusionProof return one by one, for any set of indices (with
// repeats and in any order) at every size up to 33.
func TestBatchesMatchSingleReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := newLog(t)
	const n = 33
	grow(t, l, n, event)
	for size := uint64(1); size <= n; size++ {
		idx := []uint64{size - 1, 0, size / 2, size - 1}
		leaves, err := l.LeavesAt(ctx, idx)
		if err != nil {
			t.Fatal(err)
		}
		proofs, err := l.InclusionProofs(ctx, idx, size)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range idx {
			leaf, _ := l.Leaf(ctx, x)
			p, _ := l.InclusionProof(ctx, x, size)
			if !bytes.Equal(leaves[i], leaf) || len(proofs[i]) != len(p) {
				t.Fatalf("size %d, leaf %d: batch and single reads differ", size, x)
			}
			for j := range p {
				if !bytes.Equal(proofs[i][j], p[j]) {
					t.Fatalf("size %d, leaf %d: proof hash %d differs", size, x, j)
				}
			}
		}
	}
	if _, err := l.InclusionProofs(ctx, []uint64{n}, n); !errors.Is(err, store.ErrOutOfRange) {
		t.Fatalf("a proof of a leaf past the size: %v", err)
	}
	if _, err := l.LeavesAt(ctx, []uint64{n + 5}); !errors.Is(err, store.ErrOutOfRange) {
		t.Fatalf("a leaf past the size: %v", err)
	}
}
