package delivery

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/e2e"
	"github.com/heraldhq/herald/internal/cache"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
	"github.com/redis/go-redis/v9"
)

//go:embed register.lua
var registerSource string

var registerScript = rscript.New(keys.Lua(registerSource))

// Verification code rules.
const (
	CodeTTL    = 10 * time.Minute
	CodeTries  = 5
	MaxDevices = 16
)

// Errors of device registration and authentication, for callers to branch on.
var (
	ErrNoCode         = errors.New("no verification code was issued for this number, or it expired")
	ErrBadCode        = errors.New("wrong verification code")
	ErrTooManyDevices = errors.New("the number has the most devices allowed")
	ErrBadToken       = errors.New("invalid device token")
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Device is a registered device as businesses see it.
type Device struct {
	ID        string
	PublicKey []byte
	Algorithm int
	// KeyID names PublicKey (e2e.KeyID): envelopes say which key they were sealed to.
	KeyID     string
	Created   time.Time
	tokenHash string
}

// Principal is the device a token belongs to.
type Principal struct {
	UID      string
	DeviceID string
}

// Devices registers devices and authenticates their tokens.
type Devices struct {
	rdb    redis.UniversalClient
	tokens *cache.Cache[string, Principal] // token hash -> principal
}

// tokenCacheTTL is how long a verified token is trusted without asking Redis.
const tokenCacheTTL = 5 * time.Second

// newDevices returns a Devices on rdb.
func newDevices(rdb redis.UniversalClient) *Devices {
	return &Devices{rdb: rdb, tokens: cache.New[string, Principal](tokenCacheTTL)}
}

// IssueCode makes a fresh one-time code for uid, replacing any earlier one.
func (d *Devices) IssueCode(ctx context.Context, uid string, now time.Time) (string, time.Time, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(100_000_000))
	if err != nil {
		return "", time.Time{}, err
	}
	code := fmt.Sprintf("%08d", n.Int64())
	u := keys.Recipient(uid)
	exp := now.Add(CodeTTL)
	_, err = d.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, u.Code())
		p.HSet(ctx, u.Code(), keys.Code{Hash: hash(code)}.Fields()...)
		p.PExpireAt(ctx, u.Code(), exp)
		return nil
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue code: %w", err)
	}
	return code, exp, nil
}

func record(alg int, pub []byte, tokenHash string, created time.Time) string {
	return keys.DeviceRecord{Algorithm: alg, PublicKey: pub, TokenHash: tokenHash, Created: created, KeyID: e2e.KeyID(pub)}.Encode()
}

// Register spends code and adds a device with the public key for uid. It returns the
// device's id and bearer token; only the token's hash is stored.
func (d *Devices) Register(ctx context.Context, uid, code string, pub []byte, alg int, now time.Time) (string, string, error) {
	id := "d" + strings.ToLower(b32.EncodeToString(random(8)))
	token := "hd_" + uid + "_" + id + "_" + strings.ToLower(b32.EncodeToString(random(20)))
	rec := record(alg, pub, hash(token), now)
	u := keys.Recipient(uid)
	res, err := registerScript.Run(ctx, d.rdb, []string{u.Code(), u.Devices()},
		hash(code), id, rec, CodeTries, MaxDevices).Text()
	if err != nil {
		return "", "", fmt.Errorf("register: %w", err)
	}
	switch res {
	case "ok":
		return id, token, nil
	case "no_code":
		return "", "", ErrNoCode
	case "bad_code":
		return "", "", ErrBadCode
	case "too_many":
		return "", "", ErrTooManyDevices
	}
	return "", "", fmt.Errorf("register: unexpected reply %q", res)
}

// RotateKey replaces the device's public key and returns the new key's id. Envelopes
// already queued keep the key id they were sealed to; new sends to the old key are
// refused as stale.
func (d *Devices) RotateKey(ctx context.Context, p Principal, pub []byte, alg int) (string, error) {
	u := keys.Recipient(p.UID)
	rec, err := d.rdb.HGet(ctx, u.Devices(), p.DeviceID).Result()
	if err != nil {
		return "", fmt.Errorf("rotate key: %w", err)
	}
	dev, err := parseDevice(p.DeviceID, rec)
	if err != nil {
		return "", err
	}
	if err := d.rdb.HSet(ctx, u.Devices(), p.DeviceID, record(alg, pub, dev.tokenHash, dev.Created)).Err(); err != nil {
		return "", fmt.Errorf("rotate key: %w", err)
	}
	return e2e.KeyID(pub), nil
}

// Authenticate returns the device a token belongs to, or ErrBadToken.
func (d *Devices) Authenticate(ctx context.Context, token string, now time.Time) (Principal, error) {
	h := hash(token)
	return d.tokens.Get(h, now, func() (Principal, error) {
		parts := strings.Split(token, "_")
		if len(parts) != 4 || parts[0] != "hd" || len(parts[1]) != 26 {
			return Principal{}, ErrBadToken
		}
		p := Principal{UID: parts[1], DeviceID: parts[2]}
		rec, err := d.rdb.HGet(ctx, keys.Recipient(p.UID).Devices(), p.DeviceID).Result()
		if errors.Is(err, redis.Nil) {
			return Principal{}, ErrBadToken
		}
		if err != nil {
			return Principal{}, fmt.Errorf("authenticate device: %w", err)
		}
		dev, err := parseDevice(p.DeviceID, rec)
		if err != nil || subtle.ConstantTimeCompare([]byte(dev.tokenHash), []byte(h)) != 1 {
			return Principal{}, ErrBadToken
		}
		return p, nil
	})
}

// ParseDevices turns the device hash of a recipient into devices, ordered by id.
func ParseDevices(records map[string]string) ([]Device, error) {
	out := make([]Device, 0, len(records))
	for id, rec := range records {
		dev, err := parseDevice(id, rec)
		if err != nil {
			return nil, err
		}
		out = append(out, dev)
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func parseDevice(id, rec string) (Device, error) {
	r, err := keys.ParseDeviceRecord(rec)
	if err != nil {
		return Device{}, fmt.Errorf("device %s: %w", id, err)
	}
	return Device{ID: id, PublicKey: r.PublicKey, Algorithm: r.Algorithm, KeyID: r.KeyID, Created: r.Created,
		tokenHash: r.TokenHash}, nil
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
