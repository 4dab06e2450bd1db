package business

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/e2e"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
)

func signingKey(t *testing.T) *e2e.SigningKey {
	t.Helper()
	k, err := e2e.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// endorse is old's endorsement of next for business biz.
func endorse(t *testing.T, old *e2e.SigningKey, biz string, next *e2e.SigningKey) *Endorsement {
	t.Helper()
	sig, err := e2e.EndorseSigningKey(old, biz, next.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return &Endorsement{By: e2e.KeyID(old.PublicKey()), Signature: sig}
}

func id(k *e2e.SigningKey) string { return e2e.KeyID(k.PublicKey()) }

// chainKeys are the public keys of a chain, in order, and whether each was replaced.
func chainKeys(c []KeyLink) []string {
	var ks []string
	for _, l := range c {
		s := e2e.KeyID(l.PublicKey)
		if l.Replaced {
			s += " (replaced)"
		}
		ks = append(ks, s)
	}
	return ks
}

// signingFields are the signing key fields of the business's record in Redis.
func signingFields(t *testing.T, rs *redistest.Server, biz string) []string {
	t.Helper()
	h := rs.Client.HGetAll(context.Background(), keys.Business(biz).Record()).Val()
	var fs []string
	for _, f := range slices.Sorted(maps.Keys(h)) {
		if f == keys.BusinessSigningKey || len(f) > len(keys.BusinessSigningKeyOf("")) && f[:len(keys.BusinessSigningKeyOf(""))] == keys.BusinessSigningKeyOf("") {
			fs = append(fs, f+"="+h[f])
		}
	}
	return fs
}

// TestRotationNeedsAnEndorsement: after its first key, a business registers a key only
// with a valid endorsement by a key it has in use; every refusal leaves the keys as
// they were, and the old key still delivers what it signed.
func TestRotationNeedsAnEndorsement(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client)
	ctx := context.Background()
	now := time.Now()
	biz := create(t, s, "Acme", now)
	other := create(t, s, "Other", now)

	first, next, stranger := signingKey(t), signingKey(t), signingKey(t)
	if err := s.SetSigningKey(ctx, biz, first.PublicKey(), endorse(t, stranger, biz, first)); !errors.Is(err, ErrEndorserNotInUse) {
		t.Fatalf("a first key endorsed by a stranger: %v, want ErrEndorserNotInUse", err)
	}
	if err := s.SetSigningKey(ctx, biz, first.PublicKey(), nil); err != nil {
		t.Fatalf("the first key, unsigned: %v", err)
	}
	before := signingFields(t, rs, biz)

	good := endorse(t, first, biz, next)
	flipped := *good
	flipped.Signature = append([]byte(nil), good.Signature...)
	flipped.Signature[10] ^= 0x20
	forOther := endorse(t, first, other, next)
	forOther.By = id(first)
	byStrangerAsFirst := endorse(t, stranger, biz, next)
	byStrangerAsFirst.By = id(first)
	for _, tc := range []struct {
		name string
		e    *Endorsement
		want error
	}{
		{"no endorsement", nil, ErrSigningKeyExists},
		{"by a key not of the business", endorse(t, stranger, biz, next), ErrEndorserNotInUse},
		{"a stranger's signature under the first key's id", byStrangerAsFirst, ErrBadEndorsement},
		{"a flipped signature", &flipped, ErrBadEndorsement},
		{"made for another business", forOther, ErrBadEndorsement},
		{"of another key", endorse(t, first, biz, stranger), ErrBadEndorsement},
	} {
		if err := s.SetSigningKey(ctx, biz, next.PublicKey(), tc.e); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if got := signingFields(t, rs, biz); !slices.Equal(got, before) {
			t.Fatalf("%s: the keys changed from %v to %v", tc.name, before, got)
		}
	}

	if err := s.SetSigningKey(ctx, biz, next.PublicKey(), good); err != nil {
		t.Fatalf("a key endorsed by the first: %v", err)
	}
	if err := s.SetSigningKey(ctx, biz, next.PublicKey(), nil); err != nil {
		t.Fatalf("the current key again: %v, want nil", err)
	}
	if err := s.SetSigningKey(ctx, biz, first.PublicKey(), nil); !errors.Is(err, ErrSigningKeyExists) {
		t.Fatalf("the first key again, no longer current: %v, want ErrSigningKeyExists", err)
	}
	if err := s.SetSigningKey(ctx, biz, first.PublicKey(), endorse(t, next, biz, first)); !errors.Is(err, ErrSigningKeyReused) {
		t.Fatalf("back to the first key: %v, want ErrSigningKeyReused", err)
	}
	p, err := gateway(t, rs).Profile(ctx, biz, now)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.SigningKey, next.PublicKey()) {
		t.Fatalf("current key %x, want the endorsed one", p.SigningKey)
	}
	if got, want := chainKeys(p.SigningKeyChain("")), []string{id(next), id(first)}; !slices.Equal(got, want) {
		t.Fatalf("chain of the current key = %v, want %v", got, want)
	}
	c := p.SigningKeyChain(id(next))
	if c[0].EndorsedBy != id(first) || e2e.VerifyEndorsement(c[1].PublicKey, biz, c[0].PublicKey, c[0].Endorsement) != nil {
		t.Fatalf("the chain's link does not verify: %+v", c[0])
	}
	if got, want := chainKeys(p.SigningKeyChain(id(first))), []string{id(first)}; !slices.Equal(got, want) {
		t.Fatalf("chain of the first key = %v, want %v: what it signed is delivered with it", got, want)
	}
}

// TestReplacementStartsANewChain: the operator's replacement is a key nothing vouches
// for, and the keys before it endorse nothing more (whoever holds a lost key cannot
// vouch for a key of their own), though what they signed is still delivered with them.
func TestReplacementStartsANewChain(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client)
	ctx := context.Background()
	now := time.Now()
	biz := create(t, s, "Acme", now)
	a, b, r, c, evil := signingKey(t), signingKey(t), signingKey(t), signingKey(t), signingKey(t)
	must(t, s.SetSigningKey(ctx, biz, a.PublicKey(), nil))
	must(t, s.SetSigningKey(ctx, biz, b.PublicKey(), endorse(t, a, biz, b)))
	must(t, s.ReplaceSigningKey(ctx, biz, r.PublicKey()))
	must(t, s.ReplaceSigningKey(ctx, biz, r.PublicKey())) // again: nothing changes

	for _, lost := range []*e2e.SigningKey{a, b} {
		if err := s.SetSigningKey(ctx, biz, evil.PublicKey(), endorse(t, lost, biz, evil)); !errors.Is(err, ErrEndorserNotInUse) {
			t.Fatalf("a key endorsed by a key set aside: %v, want ErrEndorserNotInUse", err)
		}
	}
	if err := s.ReplaceSigningKey(ctx, biz, a.PublicKey()); !errors.Is(err, ErrSigningKeyReused) {
		t.Fatalf("replacing with a key the business had: %v, want ErrSigningKeyReused", err)
	}
	must(t, s.SetSigningKey(ctx, biz, c.PublicKey(), endorse(t, r, biz, c)))
	p, err := s.Profile(ctx, biz, now)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string][]string{
		"":    {id(c), id(r) + " (replaced)"},
		id(r): {id(r) + " (replaced)"},
		id(b): {id(b), id(a)},
		id(a): {id(a)},
	} {
		if got := chainKeys(p.SigningKeyChain(key)); !slices.Equal(got, want) {
			t.Errorf("chain for %q = %v, want %v", key, got, want)
		}
	}
	if err := s.ReplaceSigningKey(ctx, "biz_nobody", evil.PublicKey()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replacing the key of an unknown business: %v, want ErrNotFound", err)
	}
}

// TestRetiredKeysStayOnTheChain: a retired key delivers nothing and endorses nothing,
// but stays as a link of the chains that need it, and goes once none does.
func TestRetiredKeysStayOnTheChain(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client)
	ctx := context.Background()
	now := time.Now()
	biz := create(t, s, "Acme", now)
	a, b, c, d := signingKey(t), signingKey(t), signingKey(t), signingKey(t)
	must(t, s.SetSigningKey(ctx, biz, a.PublicKey(), nil))
	must(t, s.SetSigningKey(ctx, biz, b.PublicKey(), endorse(t, a, biz, b)))
	must(t, s.SetSigningKey(ctx, biz, c.PublicKey(), endorse(t, b, biz, c)))

	if err := s.RetireSigningKey(ctx, biz, id(c)); !errors.Is(err, ErrCurrentSigningKey) {
		t.Fatalf("retiring the current key: %v, want ErrCurrentSigningKey", err)
	}
	must(t, s.RetireSigningKey(ctx, biz, id(b)))
	must(t, s.RetireSigningKey(ctx, biz, id(a)))
	if err := s.RetireSigningKey(ctx, biz, id(a)); !errors.Is(err, ErrNoSuchSigningKey) {
		t.Fatalf("retiring a retired key: %v, want ErrNoSuchSigningKey", err)
	}
	if err := s.RetireSigningKey(ctx, biz, "nosuchkey"); !errors.Is(err, ErrNoSuchSigningKey) {
		t.Fatalf("retiring an unknown key: %v, want ErrNoSuchSigningKey", err)
	}
	if err := s.SetSigningKey(ctx, biz, d.PublicKey(), endorse(t, b, biz, d)); !errors.Is(err, ErrEndorserNotInUse) {
		t.Fatalf("a key endorsed by a retired key: %v, want ErrEndorserNotInUse", err)
	}
	p, err := s.Profile(ctx, biz, now)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := chainKeys(p.SigningKeyChain(id(b))), []string{id(c), id(b), id(a)}; !slices.Equal(got, want) {
		t.Fatalf("a message signed with a retired key: chain %v, want the current key's %v", got, want)
	}

	// A replacement starts a new chain: once the keys before it are retired, no chain
	// needs them and they are gone from the record.
	must(t, s.ReplaceSigningKey(ctx, biz, d.PublicKey()))
	if got := len(signingFields(t, rs, biz)); got != 1+4 {
		t.Fatalf("after the replacement the record keeps %d signing fields, want the current id and 4 keys", got)
	}
	must(t, s.RetireSigningKey(ctx, biz, id(c)))
	if got, want := signingFields(t, rs, biz), []string{
		keys.BusinessSigningKey + "=" + id(d),
		keys.BusinessSigningKeyOf(id(d)) + "=" + keys.SigningKeyRecord{PublicKey: d.PublicKey(), Origin: keys.SigningKeyReplaced,
			State: keys.SigningKeyInUse}.Encode(),
	}; !slices.Equal(got, want) {
		t.Fatalf("after retiring every key before the replacement: %v, want %v", got, want)
	}
}

// TestSigningKeysAreBounded: a business has at most MaxSigningKeys keys in use, and a
// chain at most MaxChainLinks links, however often it rotates.
func TestSigningKeysAreBounded(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client)
	ctx := context.Background()
	now := time.Now()
	biz := create(t, s, "Acme", now)
	cur := signingKey(t)
	must(t, s.SetSigningKey(ctx, biz, cur.PublicKey(), nil))
	for range MaxSigningKeys - 1 {
		next := signingKey(t)
		must(t, s.SetSigningKey(ctx, biz, next.PublicKey(), endorse(t, cur, biz, next)))
		cur = next
	}
	next := signingKey(t)
	if err := s.SetSigningKey(ctx, biz, next.PublicKey(), endorse(t, cur, biz, next)); !errors.Is(err, ErrTooManySigningKeys) {
		t.Fatalf("key %d in use: %v, want ErrTooManySigningKeys", MaxSigningKeys+1, err)
	}
	// Retiring as it goes, a business rotates as often as it likes.
	for range 2 * MaxChainLinks {
		p, err := s.Profile(ctx, biz, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range p.SigningKeyChain("")[1:] {
			if err := s.RetireSigningKey(ctx, biz, e2e.KeyID(l.PublicKey)); err != nil && !errors.Is(err, ErrNoSuchSigningKey) {
				t.Fatal(err)
			}
		}
		next := signingKey(t)
		must(t, s.SetSigningKey(ctx, biz, next.PublicKey(), endorse(t, cur, biz, next)))
		cur = next
	}
	p, err := s.Profile(ctx, biz, now)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.SigningKeyChain("")); n != MaxChainLinks {
		t.Fatalf("chain of %d links, want %d", n, MaxChainLinks)
	}
	if n := len(signingFields(t, rs, biz)); n > 1+MaxChainLinks+1 {
		t.Fatalf("the record keeps %d signing fields, more than the chain needs", n)
	}
}

// TestProfileForSeesANewKey: a gateway that cached a business's profile before
// another gateway registered a rotation knows the new key as soon as a message names
// it, and does not reload for a key it knows.
func TestProfileForSeesANewKey(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	now := time.Now()
	a, b := gateway(t, rs), gateway(t, rs)
	biz := create(t, a, "Acme", now)
	first, next := signingKey(t), signingKey(t)
	must(t, a.SetSigningKey(ctx, biz, first.PublicKey(), nil))
	if p, err := b.ProfileFor(ctx, biz, id(first), now); err != nil || !slices.Equal(p.SigningKey, first.PublicKey()) {
		t.Fatalf("ProfileFor = %+v, %v", p, err)
	}
	must(t, a.SetSigningKey(ctx, biz, next.PublicKey(), endorse(t, first, biz, next)))
	if p, _ := b.Profile(ctx, biz, now); !slices.Equal(p.SigningKey, first.PublicKey()) {
		t.Fatal("the cached profile is not the one this test means to make stale")
	}
	p, err := b.ProfileFor(ctx, biz, id(next), now)
	if err != nil || !slices.Equal(p.SigningKeyChain(id(next))[0].PublicKey, next.PublicKey()) {
		t.Fatalf("ProfileFor a key registered on another gateway = %+v, %v; want it known", p, err)
	}
	// A key it knows costs no read: with the record gone from Redis, the cached profile
	// still serves.
	rs.Client.Del(ctx, keys.Business(biz).Record())
	if p, err := b.ProfileFor(ctx, biz, id(first), now); err != nil || !slices.Equal(p.SigningKey, next.PublicKey()) {
		t.Fatalf("ProfileFor a known key = %+v, %v; want the cached profile", p, err)
	}
}

// TestFirstKeyOnce: of businesses' concurrent first registrations, one wins; the others
// are refused, not silently overwritten.
func TestFirstKeyOnce(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	biz := create(t, New(rs.Client), "Acme", time.Now())
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = gateway(t, rs).SetSigningKey(ctx, biz, signingKey(t).PublicKey(), nil) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrSigningKeyExists):
			t.Fatalf("a concurrent first registration: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d first keys registered, want 1", won)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// countMover moves a business's pending-bytes count, as the forwarder does many times
// a second for a busy sender, just before every write a client sends.
type countMover struct {
	rdb *redis.Client
	key string
}

func (c countMover) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c countMover) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n == "evalsha" || n == "eval" {
			c.rdb.HIncrBy(ctx, c.key, keys.BusinessPending, 1)
		}
		return next(ctx, cmd)
	}
}

func (c countMover) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if cmds[0].Name() == "multi" {
			c.rdb.HIncrBy(ctx, c.key, keys.BusinessPending, 1)
		}
		return next(ctx, cmds)
	}
}

// TestSigningKeysChangeWhileTheCountMoves: a change of signing keys goes through while
// the forwarder counts the business's pending bytes on the same record between every
// read and write of it: only the keys themselves changing makes it start again.
func TestSigningKeysChangeWhileTheCountMoves(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	biz := create(t, New(rs.Client), "Busy", time.Now())
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	t.Cleanup(func() { rdb.Close() })
	rdb.AddHook(countMover{rdb: rs.Client, key: keys.Business(biz).Record()})
	s := New(rdb)
	first, next := signingKey(t), signingKey(t)
	if err := s.SetSigningKey(ctx, biz, first.PublicKey(), nil); err != nil {
		t.Fatalf("the first key: %v", err)
	}
	if err := s.SetSigningKey(ctx, biz, next.PublicKey(), endorse(t, first, biz, next)); err != nil {
		t.Fatalf("a rotation: %v", err)
	}
	if err := s.RetireSigningKey(ctx, biz, id(first)); err != nil {
		t.Fatalf("a retirement: %v", err)
	}
	if n, _ := rs.Client.HGet(ctx, keys.Business(biz).Record(), keys.BusinessPending).Int(); n < 3 {
		t.Fatalf("the count moved %d times, want at least 3: the test did not race the writes", n)
	}
}
