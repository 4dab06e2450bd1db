package business

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// gateway is one gateway's view of the businesses: a Store with caches of its own,
// on its own connection to the shared store, as a replica of heraldd has.
func gateway(t *testing.T, rs *redistest.Server) *Store {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	t.Cleanup(func() { rdb.Close() })
	return New(rdb)
}

// create makes a business named name and fails the test if it cannot.
func create(t *testing.T, s *Store, name string, now time.Time) string {
	t.Helper()
	id, err := s.Create(context.Background(), name, now)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestCreateAndGet(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client)
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_123)

	a := create(t, s, "Acme Bakery", now)
	b := create(t, s, "Acme Bakery", now)
	if a == b || !strings.HasPrefix(a, "biz_") {
		t.Fatalf("ids %q and %q: want two distinct biz_ ids", a, b)
	}
	got, err := s.Get(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	want := Business{ID: a, DisplayName: "Acme Bakery", Created: now, Limits: DefaultLimits}
	if got.ID != want.ID || got.DisplayName != want.DisplayName || !got.Created.Equal(want.Created) ||
		got.Limits != want.Limits || len(got.ActiveKeys) != 0 {
		t.Fatalf("Get = %+v, want %+v", got, want)
	}
	if _, err := s.Get(ctx, "biz_nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an unknown business: %v, want ErrNotFound", err)
	}
}

func TestKeyID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ key, want string }{
		{"hk_abc_secret", "abc"},
		{"hk__secret", ""},
		{"hk_abc", ""},
		{"hk_abc_secret_more", ""},
		{"hd_abc_secret", ""},
		{"", ""},
	} {
		if got := KeyID(tc.key); got != tc.want {
			t.Errorf("KeyID(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

// TestAPIKeys: an issued key authenticates as its business, nothing but its SHA-256 is
// stored, a key that is not exactly the issued one is refused, and a revoked key is
// refused by a gateway that had not seen it.
func TestAPIKeys(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client)
	ctx := context.Background()
	now := time.Now()
	biz := create(t, s, "Acme", now)

	key, id, err := s.IssueKey(ctx, biz, now)
	if err != nil {
		t.Fatal(err)
	}
	if KeyID(key) != id {
		t.Fatalf("key %q does not carry its id %q", key, id)
	}
	if got, err := s.Authenticate(ctx, key, now); err != nil || got != biz {
		t.Fatalf("Authenticate = %q, %v; want %q", got, err, biz)
	}
	if b, _ := s.Get(ctx, biz); !slices.Equal(b.ActiveKeys, []string{id}) {
		t.Fatalf("active keys = %v, want [%s]", b.ActiveKeys, id)
	}

	// Only the hash is stored: neither the key nor its secret part is anywhere.
	sum := sha256.Sum256([]byte(key))
	if h := rs.Client.HGet(ctx, keys.APIKey(id), "hash").Val(); h != hex.EncodeToString(sum[:]) {
		t.Fatalf("stored hash = %q, want the key's SHA-256", h)
	}
	secret := key[strings.LastIndex(key, "_")+1:]
	for _, k := range rs.Client.Keys(ctx, "*").Val() {
		for f, v := range rs.Client.HGetAll(ctx, k).Val() {
			if strings.Contains(v, secret) || strings.Contains(f, secret) {
				t.Fatalf("%s holds the key's secret in field %s", k, f)
			}
		}
	}

	last := "x" // a last character the key does not end with
	if strings.HasSuffix(key, last) {
		last = "y"
	}
	for _, bad := range []string{
		key[:len(key)-1] + last,         // right id, wrong secret
		"hk_" + id + "_" + "a" + secret, // right id, longer secret
		"hk_nosuchkey_" + secret,        // unknown id
		"not a key",
		"",
	} {
		if _, err := s.Authenticate(ctx, bad, now); !errors.Is(err, ErrBadKey) {
			t.Errorf("Authenticate(%q) = %v, want ErrBadKey", bad, err)
		}
	}

	if err := s.RevokeKey(ctx, id, now); err != nil {
		t.Fatal(err)
	}
	if _, err := gateway(t, rs).Authenticate(ctx, key, now); !errors.Is(err, ErrBadKey) {
		t.Fatalf("revoked key: %v, want ErrBadKey", err)
	}
	if b, _ := s.Get(ctx, biz); len(b.ActiveKeys) != 0 {
		t.Fatalf("active keys after revoking = %v, want none", b.ActiveKeys)
	}
	if err := s.RevokeKey(ctx, id, now); err != nil {
		t.Fatalf("revoking twice: %v, want nil", err)
	}
	if err := s.RevokeKey(ctx, "nosuchkey", now); !errors.Is(err, ErrNoSuchKey) {
		t.Fatalf("revoking an unknown key: %v, want ErrNoSuchKey", err)
	}
	if _, _, err := s.IssueKey(ctx, "biz_nobody", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("IssueKey for an unknown business: %v, want ErrNotFound", err)
	}
}

// TestRevocationWindow: the gateway that revokes a key refuses it at once; another
// that verified it before may go on trusting it from its cache, but for no longer
// than the 4 seconds the package promises, on its own clock from when it verified it.
func TestRevocationWindow(t *testing.T) {
	t.Parallel()
	const window = 4 * time.Second // as the package doc, README and admin.proto state it
	rs := redistest.Start(t)
	admin, gw := gateway(t, rs), gateway(t, rs)
	ctx := context.Background()
	t0 := time.Now()
	biz := create(t, admin, "Acme", t0)
	key, id, err := admin.IssueKey(ctx, biz, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Store{admin, gw} {
		if _, err := s.Authenticate(ctx, key, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.RevokeKey(ctx, id, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Authenticate(ctx, key, t0); !errors.Is(err, ErrBadKey) {
		t.Fatalf("on the revoking gateway: %v, want ErrBadKey at once", err)
	}
	if _, err := gw.Authenticate(ctx, key, t0.Add(time.Second)); err != nil {
		t.Fatalf("1 s after revoking: %v; the test means to show a cached key, and expected one", err)
	}
	if _, err := gw.Authenticate(ctx, key, t0.Add(window)); !errors.Is(err, ErrBadKey) {
		t.Fatalf("%v after revoking: %v, want ErrBadKey", window, err)
	}
	if 2*KeyCacheTTL > window {
		t.Fatalf("KeyCacheTTL = %v: the cache may serve a key for 2×TTL, past the %v promised", KeyCacheTTL, window)
	}
}

// TestLimits: limits set through one gateway apply there at once and on another
// gateway once its cached copy is 2×LimitsCacheTTL old.
func TestLimits(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	admin, gw := gateway(t, rs), gateway(t, rs)
	ctx := context.Background()
	t0 := time.Now()
	biz := create(t, admin, "Acme", t0)

	if l, err := gw.Limits(ctx, biz, t0); err != nil || l != DefaultLimits {
		t.Fatalf("Limits of a new business = %+v, %v; want %+v", l, err, DefaultLimits)
	}
	// Prime the setting gateway's cache too, to show that its own change replaces it.
	admin.Limits(ctx, biz, t0)
	set := Limits{PerSecond: 0.25, Burst: 3, DailyUnique: 0}
	if err := admin.SetLimits(ctx, biz, set); err != nil {
		t.Fatal(err)
	}
	if l, _ := admin.Limits(ctx, biz, t0); l != set {
		t.Fatalf("Limits on the gateway that set them = %+v, want %+v at once", l, set)
	}
	if l, _ := gw.Limits(ctx, biz, t0.Add(LimitsCacheTTL/2)); l != DefaultLimits {
		t.Fatalf("Limits on another gateway within its cache's life = %+v, want the cached %+v", l, DefaultLimits)
	}
	if l, _ := gw.Limits(ctx, biz, t0.Add(2*LimitsCacheTTL)); l != set {
		t.Fatalf("Limits on another gateway after 2×LimitsCacheTTL = %+v, want %+v", l, set)
	}
	if b, _ := gw.Get(ctx, biz); b.Limits != set {
		t.Fatalf("Get shows limits %+v, want %+v", b.Limits, set)
	}

	if err := admin.SetLimits(ctx, "biz_nobody", set); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetLimits of an unknown business: %v, want ErrNotFound", err)
	}
	if _, err := gw.Limits(ctx, "biz_nobody", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Limits of an unknown business: %v, want ErrNotFound", err)
	}
	if rs.Client.Exists(ctx, keys.Business("biz_nobody").Record()).Val() != 0 {
		t.Fatal("SetLimits of an unknown business created its record")
	}
}

// TestSigningKeyAndProfile: a business's profile carries its name and, once it
// registered one, its signing key, at once on the gateway that registered it.
func TestSigningKeyAndProfile(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s := New(rs.Client)
	ctx := context.Background()
	now := time.Now()
	biz := create(t, s, "Acme", now)

	p, err := s.Profile(ctx, biz, now)
	if err != nil || p.DisplayName != "Acme" || p.SigningKey != nil || p.SigningKeyChain("") != nil {
		t.Fatalf("Profile = %+v, %v; want the name and no signing key", p, err)
	}
	pub := signingKey(t).PublicKey()
	if err := s.SetSigningKey(ctx, biz, pub, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSigningKey(ctx, biz, pub, nil); err != nil {
		t.Fatalf("the same key again: %v, want nil", err)
	}
	p, err = s.Profile(ctx, biz, now)
	if err != nil || p.DisplayName != "Acme" || !slices.Equal(p.SigningKey, pub) {
		t.Fatalf("Profile after SetSigningKey = %+v, %v; want key %x", p, err, pub)
	}
	if p, err := gateway(t, rs).Profile(ctx, biz, now); err != nil || !slices.Equal(p.SigningKey, pub) {
		t.Fatalf("Profile on another gateway = %+v, %v; want key %x", p, err, pub)
	}
	if err := s.SetSigningKey(ctx, biz, pub[:31], nil); err == nil {
		t.Fatal("a 31-byte key was registered")
	}
	if name, err := s.Name(ctx, biz, now); err != nil || name != "Acme" {
		t.Fatalf("Name = %q, %v", name, err)
	}
	if _, err := s.Profile(ctx, "biz_nobody", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Profile of an unknown business: %v, want ErrNotFound", err)
	}
	if err := s.SetSigningKey(ctx, "biz_nobody", pub, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetSigningKey of an unknown business: %v, want ErrNotFound", err)
	}
	if rs.Client.Exists(ctx, keys.Business("biz_nobody").Record()).Val() != 0 {
		t.Fatal("SetSigningKey of an unknown business created its record")
	}
}
