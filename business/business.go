// Package business keeps businesses, their API keys and their signing keys.
//
// Guarantees:
//   - An API key is shown once, at issue; Redis keeps only its SHA-256.
//   - A revoked API key stops working on every gateway within 4 seconds (RevokeKey),
//     and at once on the gateway that revoked it.
//   - A business's signing key changes only to a key that one of its keys in use
//     endorsed (SetSigningKey), or by the operator's replacement (ReplaceSigningKey),
//     which every device that trusted an earlier key sees as a key change.
package business

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/cache"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/redis/go-redis/v9"
)

// KeyCacheTTL is how long a gateway trusts a verified API key without asking Redis
// again. The cache may serve an entry for up to twice its TTL (package cache), so it
// is half of the 4 seconds within which a revoked key must stop working everywhere.
const KeyCacheTTL = 2 * time.Second

// profileCacheTTL bounds how stale a display name, or the current signing key a
// delivery of a message that names none carries, can be (ProfileFor sees a key a
// message names at once).
const profileCacheTTL = 5 * time.Second

// LimitsCacheTTL is how long a gateway uses a business's limits before reading them
// again; a change by the operator applies everywhere within twice that.
const LimitsCacheTTL = 2 * time.Second

// Limits are a business's sending limits, global across gateways.
type Limits struct {
	// PerSecond is the sustained rate of admitted messages.
	PerSecond float64
	// Burst is how many may go at once above the sustained rate.
	Burst int
	// DailyUnique is how many people the business may start messaging in a rolling
	// window (24 h in production); 0 means no limit.
	DailyUnique int
}

// DefaultLimits are a new business's limits: conservative, for the operator to raise.
var DefaultLimits = Limits{PerSecond: 10, Burst: 20, DailyUnique: 1000}

// Errors for callers to branch on.
var (
	ErrNotFound  = errors.New("no such business")
	ErrBadKey    = errors.New("invalid or revoked API key")
	ErrNoSuchKey = errors.New("no such API key")
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Business is a business's record.
type Business struct {
	ID          string
	DisplayName string
	Created     time.Time
	ActiveKeys  []string
	Limits      Limits
}

// Store keeps businesses and keys.
type Store struct {
	rdb      redis.UniversalClient
	keys     *cache.Cache[string, string]      // key hash -> business
	profiles *cache.Cache[string, Profile]     // business id -> profile
	limits   *cache.Cache[string, limitsEntry] // business id -> limits, pending bytes
}

// Profile is what deliveries tell devices about their sender.
type Profile struct {
	DisplayName string
	// SigningKey is the business's current Ed25519 public key, if it registered one.
	SigningKey []byte
	// current is the current key's id; chains are the chains of the keys messages are
	// delivered with (in use or set aside), by key id; retired are the ids of retired
	// keys the record still holds.
	current string
	chains  map[string][]KeyLink
	retired map[string]bool
}

// knows reports whether the profile has heard of the signing key with id keyID.
func (p Profile) knows(keyID string) bool {
	_, ok := p.chains[keyID]
	return ok || p.retired[keyID]
}

// SigningKeyChain is what a delivery of a message signed with key id carries: that
// key while the business keeps it, else (an id not given, or retired) the current one;
// then the key that endorsed it, and so on back to the business's first key or to an
// operator's replacement, at most MaxChainLinks links. Nil when the business has no
// key. The links are shared: callers must not change them.
func (p Profile) SigningKeyChain(id string) []KeyLink {
	if c, ok := p.chains[id]; ok {
		return c
	}
	return p.chains[p.current]
}

// profileOf is the profile r describes.
func profileOf(r keys.BusinessRecord) Profile {
	p := Profile{DisplayName: r.DisplayName, current: r.CurrentSigningKey, chains: map[string][]KeyLink{},
		retired: map[string]bool{}}
	for id, k := range r.SigningKeys {
		if k.State == keys.SigningKeyRetired {
			p.retired[id] = true
		} else {
			p.chains[id] = chainOf(r.SigningKeys, id)
		}
	}
	if c := p.chains[p.current]; len(c) > 0 {
		p.SigningKey = c[0].PublicKey
	}
	return p
}

// New returns a Store on rdb.
func New(rdb redis.UniversalClient) *Store {
	return &Store{rdb: rdb, keys: cache.New[string, string](KeyCacheTTL),
		profiles: cache.New[string, Profile](profileCacheTTL), limits: cache.New[string, limitsEntry](LimitsCacheTTL)}
}

// Create makes a business.
func (s *Store) Create(ctx context.Context, name string, now time.Time) (string, error) {
	id := "biz_" + strings.ToLower(b32.EncodeToString(random(10)))
	ok, err := s.rdb.HSetNX(ctx, keys.Business(id).Record(), keys.BusinessName, name).Result()
	if err != nil {
		return "", fmt.Errorf("create business: %w", err)
	}
	if !ok {
		return "", errors.New("create business: id collision")
	}
	rec := keys.BusinessRecord{Created: now, Limits: stored(DefaultLimits)}
	if err := s.rdb.HSet(ctx, keys.Business(id).Record(), rec.Fields()...).Err(); err != nil {
		return "", fmt.Errorf("create business: %w", err)
	}
	return id, nil
}

// Get returns a business, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (Business, error) {
	b := keys.Business(id)
	var rec *redis.MapStringStringCmd
	var ks *redis.StringSliceCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rec = p.HGetAll(ctx, b.Record())
		ks = p.SMembers(ctx, b.APIKeys())
		return nil
	}); err != nil {
		return Business{}, fmt.Errorf("get business: %w", err)
	}
	r, err := keys.ParseBusiness(rec.Val())
	if err != nil {
		return Business{}, fmt.Errorf("get business: %w", err)
	}
	if r.DisplayName == "" {
		return Business{}, ErrNotFound
	}
	active := ks.Val()
	slices.Sort(active)
	return Business{ID: id, DisplayName: r.DisplayName, Created: r.Created, ActiveKeys: active,
		Limits: limitsOf(r)}, nil
}

// limitsOf are the limits r stores, or the defaults when it stores none.
func limitsOf(r keys.BusinessRecord) Limits {
	if r.Limits == nil {
		return DefaultLimits
	}
	return Limits{PerSecond: r.Limits.PerSecond, Burst: r.Limits.Burst, DailyUnique: r.Limits.DailyUnique}
}

// stored is l as a business record stores it.
func stored(l Limits) *keys.BusinessLimits {
	return &keys.BusinessLimits{PerSecond: l.PerSecond, Burst: l.Burst, DailyUnique: l.DailyUnique}
}

// SetLimits sets the business's limits. Every gateway applies them within
// 2×LimitsCacheTTL.
func (s *Store) SetLimits(ctx context.Context, id string, l Limits) error {
	if _, err := s.Get(ctx, id); err != nil {
		return err
	}
	if err := s.rdb.HSet(ctx, keys.Business(id).Record(), keys.BusinessRecord{Limits: stored(l)}.Fields()...).Err(); err != nil {
		return fmt.Errorf("set limits: %w", err)
	}
	s.limits.Forget(id)
	return nil
}

// Limits returns the business's limits, from a cache of LimitsCacheTTL.
func (s *Store) Limits(ctx context.Context, id string, now time.Time) (Limits, error) {
	e, err := s.cachedLimits(ctx, id, now)
	return e.limits, err
}

// cachedLimits is the business's entry of the limits cache.
func (s *Store) cachedLimits(ctx context.Context, id string, now time.Time) (limitsEntry, error) {
	return s.limits.Get(id, now, func() (limitsEntry, error) {
		h, err := s.rdb.HGetAll(ctx, keys.Business(id).Record()).Result()
		if err != nil {
			return limitsEntry{}, fmt.Errorf("business limits: %w", err)
		}
		r, err := keys.ParseBusiness(h)
		if err != nil {
			return limitsEntry{}, fmt.Errorf("business limits: %w", err)
		}
		if r.DisplayName == "" {
			return limitsEntry{}, ErrNotFound
		}
		return limitsEntry{limits: limitsOf(r), pending: r.PendingBytes, read: now}, nil
	})
}

// PendingBytes returns the bytes the business's messages in flight hold, as Redis
// counted them (keys.BusinessPending) at the time it also returns: read with its
// limits, from the same cache, so that judging the pending-bytes quota costs the Send
// path no round trip.
func (s *Store) PendingBytes(ctx context.Context, id string, now time.Time) (int64, time.Time, error) {
	e, err := s.cachedLimits(ctx, id, now)
	return e.pending, e.read, err
}

// limitsEntry is what the limits cache holds for a business.
type limitsEntry struct {
	limits  Limits
	pending int64
	read    time.Time
}

// Name returns the business's display name, from a cache of up to profileCacheTTL.
func (s *Store) Name(ctx context.Context, id string, now time.Time) (string, error) {
	p, err := s.Profile(ctx, id, now)
	return p.DisplayName, err
}

// Profile returns the business's display name and signing key, from a cache of
// profileCacheTTL.
func (s *Store) Profile(ctx context.Context, id string, now time.Time) (Profile, error) {
	return s.profiles.Get(id, now, func() (Profile, error) {
		h, err := s.rdb.HGetAll(ctx, keys.Business(id).Record()).Result()
		if err != nil {
			return Profile{}, fmt.Errorf("business profile: %w", err)
		}
		r, err := keys.ParseBusiness(h)
		if err != nil {
			return Profile{}, fmt.Errorf("business profile: %w", err)
		}
		if r.DisplayName == "" {
			return Profile{}, ErrNotFound
		}
		return profileOf(r), nil
	})
}

// ProfileFor is Profile for a delivery of a message signed with the key keyID: a
// cached profile that has not heard of that key (the business registered it on
// another gateway since) is loaded again at once, so that a message signed right
// after a rotation is delivered with its key and chain, not with the key before it,
// which the device would refuse.
func (s *Store) ProfileFor(ctx context.Context, id, keyID string, now time.Time) (Profile, error) {
	p, err := s.Profile(ctx, id, now)
	if err != nil || keyID == "" || p.knows(keyID) {
		return p, err
	}
	s.profiles.Forget(id)
	return s.Profile(ctx, id, now)
}

// IssueKey makes a new API key for the business: `hk_<key id>_<secret>`.
func (s *Store) IssueKey(ctx context.Context, business string, now time.Time) (key, id string, err error) {
	if _, err := s.Get(ctx, business); err != nil {
		return "", "", err
	}
	id = strings.ToLower(b32.EncodeToString(random(10)))
	key = "hk_" + id + "_" + strings.ToLower(b32.EncodeToString(random(20)))
	rec := keys.APIKeyRecord{Business: business, Hash: hash(key), Created: now}
	if _, err := s.rdb.HSet(ctx, keys.APIKey(id), rec.Fields()...).Result(); err != nil {
		return "", "", fmt.Errorf("issue key: %w", err)
	}
	if err := s.rdb.SAdd(ctx, keys.Business(business).APIKeys(), id).Err(); err != nil {
		return "", "", fmt.Errorf("issue key: %w", err)
	}
	return key, id, nil
}

// KeyID returns the id part of an API key, or "" if it is not shaped like one.
func KeyID(key string) string {
	parts := strings.Split(key, "_")
	if len(parts) != 3 || parts[0] != "hk" || parts[1] == "" {
		return ""
	}
	return parts[1]
}

// RevokeKey revokes the key with the given id: this gateway refuses it at once, and
// every gateway within 4 seconds, the time a verified key may live in another
// gateway's cache (2×KeyCacheTTL). Revoking a revoked key is not an error.
func (s *Store) RevokeKey(ctx context.Context, id string, now time.Time) error {
	rec, err := s.rdb.HMGet(ctx, keys.APIKey(id), keys.APIKeyBusiness, keys.APIKeyHash).Result()
	if err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	business, _ := rec[0].(string)
	if business == "" {
		return ErrNoSuchKey
	}
	if err := s.rdb.HSet(ctx, keys.APIKey(id), keys.APIKeyRevoked, now.UnixMilli()).Err(); err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	if h, _ := rec[1].(string); h != "" {
		s.keys.Forget(h) // the cache is keyed by the key's hash
	}
	if err := s.rdb.SRem(ctx, keys.Business(business).APIKeys(), id).Err(); err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	return nil
}

// Authenticate returns the business the key belongs to, or ErrBadKey.
func (s *Store) Authenticate(ctx context.Context, key string, now time.Time) (string, error) {
	h := hash(key)
	return s.keys.Get(h, now, func() (string, error) {
		id := KeyID(key)
		if id == "" {
			return "", ErrBadKey
		}
		fields, err := s.rdb.HGetAll(ctx, keys.APIKey(id)).Result()
		if err != nil {
			return "", fmt.Errorf("authenticate key: %w", err)
		}
		rec, err := keys.ParseAPIKey(fields)
		if err != nil || !rec.Revoked.IsZero() || subtle.ConstantTimeCompare([]byte(rec.Hash), []byte(h)) != 1 {
			return "", ErrBadKey // no such key (or not one Herald wrote), revoked, or not this key
		}
		return rec.Business, nil
	})
}

// CheckKey reports whether key is still valid, asking Redis rather than the cache:
// for a stream authenticated when it opened, which must end once its key is revoked
// within the same 4 seconds as every call. The error is ErrBadKey for a key revoked
// (or never valid), or a Redis error.
func (s *Store) CheckKey(ctx context.Context, key string) error {
	id := KeyID(key)
	if id == "" {
		return ErrBadKey
	}
	fields, err := s.rdb.HGetAll(ctx, keys.APIKey(id)).Result()
	if err != nil {
		return fmt.Errorf("check key: %w", err)
	}
	rec, err := keys.ParseAPIKey(fields)
	if err != nil || !rec.Revoked.IsZero() || subtle.ConstantTimeCompare([]byte(rec.Hash), []byte(hash(key))) != 1 {
		return ErrBadKey
	}
	return nil
}

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
