package delivery

import (
	"context"
	"crypto/hmac"
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

var (
	//go:embed register.lua
	registerSource string
	//go:embed approve.lua
	approveSource string
	//go:embed activate.lua
	activateSource string
	//go:embed remove.lua
	removeSource string
	//go:embed rotate.lua
	rotateSource string
	//go:embed noticeack.lua
	noticeAckSource string
	//go:embed issue.lua
	issueSource string

	registerScript  = rscript.New(keys.Lua(registerSource))
	approveScript   = rscript.New(keys.Lua(approveSource))
	activateScript  = rscript.New(keys.Lua(activateSource))
	removeScript    = rscript.New(keys.Lua(removeSource))
	rotateScript    = rscript.New(keys.Lua(rotateSource))
	noticeAckScript = rscript.New(keys.Lua(noticeAckSource))
	issueScript     = rscript.New(keys.Lua(issueSource))
)

// Verification code rules. A code lives CodeTTL. Per number and CodeWindow, at most
// CodeIssues codes are issued and CodeTries wrong codes offered, counted across every
// code of the window: issuing a new code gives no new tries. A guesser thus has
// CodeTries chances in 10⁸ per number per hour.
const (
	CodeTTL    = 10 * time.Minute
	CodeTries  = 5
	CodeIssues = 5
	CodeWindow = time.Hour
	MaxDevices = 16
)

// Errors of device registration and authentication, for callers to branch on.
var (
	ErrNoCode         = errors.New("no verification code was issued for this number, or it expired")
	ErrBadCode        = errors.New("wrong verification code")
	ErrTooManyDevices = errors.New("the number has the most devices allowed")
	ErrBadToken       = errors.New("invalid device token")
	// ErrNoSuchDevice: the device named is not one of the person's (or is gone).
	ErrNoSuchDevice = errors.New("no such device of this person")
	// ErrKeyMismatch: a pending device's key is not the one the approval names.
	ErrKeyMismatch = errors.New("the pending device's key is not the one approved")
	// ErrPending: the device waits for approval; it may receive from Activate on.
	ErrPending = errors.New("the device waits for approval")
	// ErrBadChallenge: a key rotation's proof of the current key is wrong or expired.
	ErrBadChallenge = errors.New("the key challenge's answer is wrong or expired")
	// ErrTooManyCodes: the number had CodeIssues codes in this CodeWindow.
	ErrTooManyCodes = errors.New("the number has had the most verification codes allowed for now")
	// ErrCodeLocked: the number was offered CodeTries wrong codes in this CodeWindow.
	ErrCodeLocked = errors.New("too many wrong verification codes for the number for now")
)

// WaitError is a refusal that a wait lifts: errors.Is(err, Err) holds, and Wait says
// how long until a retry can pass.
type WaitError struct {
	Err  error
	Wait time.Duration
}

func (e *WaitError) Error() string { return fmt.Sprintf("%v; retry in %v", e.Err, e.Wait) }

// Unwrap makes errors.Is(err, e.Err) hold.
func (e *WaitError) Unwrap() error { return e.Err }

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Device is a registered device as businesses see it.
type Device struct {
	ID        string
	PublicKey []byte
	Algorithm int
	// KeyID names PublicKey (e2e.KeyID): envelopes say which key they were sealed to.
	KeyID   string
	Created time.Time
	// Pending is true for a device waiting for approval; it becomes active at Activate
	// unless approved or refused before.
	Pending   bool
	Activate  time.Time
	tokenHash string
}

// Principal is the device a token belongs to.
type Principal struct {
	UID      string
	DeviceID string
	// Pending is true while the device waits for approval: it may only ask to be
	// activated (Devices.Activate).
	Pending bool
}

// Devices registers devices, lets a person's devices approve, list and remove each
// other, and authenticates their tokens.
//
// A number's first device is active at once. Later ones are pending: they receive
// nothing and are not listed to businesses until an active device approves them
// (bound to the key the person compared), or until the approval wait has passed with
// no device refusing them. Every change is a notice in the person's notice stream,
// which each device's Receive delivers until the device acknowledges it.
type Devices struct {
	rdb    redis.UniversalClient
	exp    *Expiries
	tokens *cache.Cache[string, Principal] // token hash -> principal
	wait   time.Duration                   // see WithApprovalWait
	window int64                           // receipt window, ms
	secret []byte                          // keys the key challenges; see WithSecret
}

// tokenCacheTTL is how long a verified token is trusted without asking Redis: a
// removed device's token is refused by every gateway within it.
const tokenCacheTTL = 5 * time.Second

// newDevices returns a Devices on rdb.
func newDevices(rdb redis.UniversalClient, exp *Expiries, c config) *Devices {
	return &Devices{rdb: rdb, exp: exp, tokens: cache.New[string, Principal](tokenCacheTTL), wait: c.approvalWait,
		window: c.receiptWindow.Milliseconds(), secret: c.secret}
}

// IssueCode makes a fresh one-time code for uid, replacing any earlier one, unless
// the number had CodeIssues codes in the window (a *WaitError for ErrTooManyCodes).
func (d *Devices) IssueCode(ctx context.Context, uid string, now time.Time) (string, time.Time, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(100_000_000))
	if err != nil {
		return "", time.Time{}, err
	}
	code := fmt.Sprintf("%08d", n.Int64())
	u := keys.Recipient(uid)
	exp := now.Add(CodeTTL)
	args := append([]any{CodeIssues, CodeWindow.Milliseconds(), exp.UnixMilli()}, keys.Code{Hash: hash(code)}.Fields()...)
	res, err := issueScript.Run(ctx, d.rdb, []string{u.Code(), u.VerifyCounts()}, args...).Slice()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue code: %w", err)
	}
	word, ms, err := verdict(res)
	switch {
	case err != nil:
		return "", time.Time{}, fmt.Errorf("issue code: %w", err)
	case word == "too_many":
		return "", time.Time{}, &WaitError{Err: ErrTooManyCodes, Wait: ms}
	case word != "ok":
		return "", time.Time{}, fmt.Errorf("issue code: unexpected reply %v", res)
	}
	return code, exp, nil
}

// verdict reads a {word, ms} script reply.
func verdict(res []any) (string, time.Duration, error) {
	if len(res) != 2 {
		return "", 0, fmt.Errorf("reply %v", res)
	}
	word, _ := res[0].(string)
	ms, _ := res[1].(int64)
	return word, time.Duration(ms) * time.Millisecond, nil
}

func record(alg int, pub []byte, tokenHash string, created time.Time) string {
	return keys.DeviceRecord{Algorithm: alg, PublicKey: pub, TokenHash: tokenHash, Created: created, KeyID: e2e.KeyID(pub)}.Encode()
}

// Registration is a registered device's credentials.
type Registration struct {
	DeviceID string
	// Token is the device's bearer token; only its hash is stored.
	Token string
	// Pending is true when the number had devices: this one waits for approval, or
	// for Activate.
	Pending  bool
	Activate time.Time
}

// Register spends code and adds a device with the public key for uid: active if it
// is the number's first, pending otherwise. A wrong code is a *BadCodeError
// (ErrBadCode); a number offered CodeTries wrong codes in the window takes none until
// it ends (a *WaitError for ErrCodeLocked).
func (d *Devices) Register(ctx context.Context, uid, code string, pub []byte, alg int, now time.Time) (Registration, error) {
	id := "d" + strings.ToLower(b32.EncodeToString(random(8)))
	token := "hd_" + uid + "_" + id + "_" + strings.ToLower(b32.EncodeToString(random(20)))
	rec := record(alg, pub, hash(token), now)
	u := keys.Recipient(uid)
	activate := time.UnixMilli(now.Add(d.wait).UnixMilli()) // as stored
	res, err := registerScript.Run(ctx, d.rdb, []string{u.Code(), u.Devices(), u.PendingDevices(), u.Notices(),
		u.VerifyCounts(), u.Businesses(), u.BusinessConsentLog()},
		hash(code), id, rec, CodeTries, MaxDevices, now.UnixMilli(), activate.UnixMilli(), u.Channel(),
		CodeWindow.Milliseconds(), u.Pref("")).Slice()
	if err != nil {
		return Registration{}, fmt.Errorf("register: %w", err)
	}
	word, ms, err := verdict(res)
	if err != nil {
		return Registration{}, fmt.Errorf("register: %w", err)
	}
	switch word {
	case "ok":
		return Registration{DeviceID: id, Token: token}, nil
	case "pending":
		return Registration{DeviceID: id, Token: token, Pending: true, Activate: activate}, nil
	case "no_code":
		return Registration{}, ErrNoCode
	case "bad_code":
		return Registration{}, &BadCodeError{Left: int(ms / time.Millisecond)}
	case "locked":
		return Registration{}, &WaitError{Err: ErrCodeLocked, Wait: ms}
	case "too_many":
		return Registration{}, ErrTooManyDevices
	}
	return Registration{}, fmt.Errorf("register: unexpected reply %v", res)
}

// BadCodeError is a wrong verification code: errors.Is(err, ErrBadCode) holds, and
// Left says how many more wrong codes the number may be offered in the window.
type BadCodeError struct{ Left int }

func (e *BadCodeError) Error() string {
	return fmt.Sprintf("%v (%d more wrong codes allowed for the number for now)", ErrBadCode, e.Left)
}

// Unwrap makes errors.Is(err, ErrBadCode) hold.
func (e *BadCodeError) Unwrap() error { return ErrBadCode }

// List returns the person's devices, active and pending, by id.
func (d *Devices) List(ctx context.Context, uid string) ([]Device, error) {
	u := keys.Recipient(uid)
	var active, pending *redis.MapStringStringCmd
	if _, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		active, pending = p.HGetAll(ctx, u.Devices()), p.HGetAll(ctx, u.PendingDevices())
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	out, err := ParseDevices(active.Val())
	if err != nil {
		return nil, err
	}
	waiting, err := ParseDevices(pending.Val())
	if err != nil {
		return nil, err
	}
	for _, w := range waiting {
		w.Pending, w.Activate = true, w.Created.Add(d.wait)
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Approve makes the pending device target of p's person active, if its key is keyID
// (the key whose code the person compared). p must be an active device.
func (d *Devices) Approve(ctx context.Context, p Principal, target, keyID string, now time.Time) error {
	u := keys.Recipient(p.UID)
	res, err := approveScript.Run(ctx, d.rdb, []string{u.Devices(), u.PendingDevices(), u.Notices()},
		target, keyID, p.DeviceID, now.UnixMilli(), MaxDevices, u.Channel()).Text()
	if err != nil {
		return fmt.Errorf("approve device: %w", err)
	}
	switch res {
	case "ok":
		return nil
	case "not_active":
		return ErrBadToken
	case "no_such":
		return ErrNoSuchDevice
	case "key_mismatch":
		return ErrKeyMismatch
	case "too_many":
		return ErrTooManyDevices
	}
	return fmt.Errorf("approve device: unexpected reply %q", res)
}

// Activate makes p, a pending device, active if its approval wait has passed and no
// device refused it. It returns ErrPending, wrapped in a *PendingError saying until
// when, while it must wait, and ErrBadToken once it was refused.
func (d *Devices) Activate(ctx context.Context, p Principal, now time.Time) error {
	u := keys.Recipient(p.UID)
	res, err := activateScript.Run(ctx, d.rdb, []string{u.Devices(), u.PendingDevices(), u.Notices()},
		p.DeviceID, now.UnixMilli(), d.wait.Milliseconds(), MaxDevices, u.Channel()).Slice()
	if err != nil {
		return fmt.Errorf("activate device: %w", err)
	}
	switch word, _ := res[0].(string); word {
	case "ok", "active":
		return nil
	case "gone":
		return ErrBadToken
	case "wait":
		at, _ := res[1].(int64)
		return &PendingError{Activate: time.UnixMilli(at)}
	case "too_many":
		return ErrTooManyDevices
	default:
		return fmt.Errorf("activate device: unexpected reply %v", res)
	}
}

// PendingError says that a device waits for approval, and when it becomes active
// unless refused. errors.Is(err, ErrPending) holds for it.
type PendingError struct{ Activate time.Time }

func (e *PendingError) Error() string {
	return fmt.Sprintf("%v: it becomes active at %s unless refused", ErrPending, e.Activate.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrPending) hold.
func (e *PendingError) Unwrap() error { return ErrPending }

// Remove removes the device target of p's person, active or pending (p itself
// included): its token stops working (on this gateway at once, on others within
// tokenCacheTTL), what was queued for it is reported expired, and every device is
// told. p must be an active device.
func (d *Devices) Remove(ctx context.Context, p Principal, target string, now time.Time) error {
	u := keys.Recipient(p.UID)
	res, err := runIndexed(ctx, clientRunner{d.rdb}, p.UID, now, removeScript, []string{u.Devices(), u.PendingDevices(), u.Notices(),
		u.NoticeCursors(), u.Mailbox(target), u.Outbox(), u.PushEndpoints()},
		target, p.DeviceID, now.UnixMilli(), u.MessagePrefix(), d.window, u.Channel()).StringSlice()
	if err != nil {
		return fmt.Errorf("remove device: %w", err)
	}
	switch {
	case len(res) == 0:
	case res[0] == "ok" && len(res) >= 2:
		d.tokens.Forget(res[1])
		d.exp.untrack(res[2:])
		d.exp.out.Kick(p.UID)
		return nil
	case res[0] == "not_active":
		return ErrBadToken
	case res[0] == "no_such":
		return ErrNoSuchDevice
	}
	return fmt.Errorf("remove device: unexpected reply %v", res)
}

// challengeTTL is how long a key challenge can be answered.
const challengeTTL = 5 * time.Minute

// Challenge returns a challenge sealed to p's current key, and when it expires, for
// RotateKey: the secret inside is a MAC, under the gateways' shared secret, of the
// device, its current key and the expiry, so any gateway can check the answer and
// none has to remember the challenge.
func (d *Devices) Challenge(ctx context.Context, p Principal, now time.Time) ([]byte, time.Time, error) {
	dev, err := d.active(ctx, p)
	if err != nil {
		return nil, time.Time{}, err
	}
	exp := now.Add(challengeTTL)
	ch, err := e2e.SealChallenge(e2e.Algorithm(dev.Algorithm), dev.PublicKey, d.challengeSecret(p, dev.KeyID, exp))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("key challenge: %w", err)
	}
	return ch, exp, nil
}

func (d *Devices) challengeSecret(p Principal, keyID string, exp time.Time) []byte {
	m := hmac.New(sha256.New, d.secret)
	fmt.Fprintf(m, "herald key challenge v1|%s|%s|%s|%d", p.UID, p.DeviceID, keyID, exp.UnixMilli())
	return m.Sum(nil)
}

// active reads p's device record.
func (d *Devices) active(ctx context.Context, p Principal) (Device, error) {
	rec, err := d.rdb.HGet(ctx, keys.Recipient(p.UID).Devices(), p.DeviceID).Result()
	if errors.Is(err, redis.Nil) {
		return Device{}, ErrBadToken
	}
	if err != nil {
		return Device{}, fmt.Errorf("read device: %w", err)
	}
	return parseDevice(p.DeviceID, rec)
}

// RotateKey replaces the device's public key and returns the new key's id, if answer
// is the secret of a challenge from Challenge for its current key that expires at exp
// and has not yet: the device proves it holds the key it replaces. Envelopes already
// queued keep the key id they were sealed to; new sends to the old key are refused as
// stale. Every device is told.
func (d *Devices) RotateKey(ctx context.Context, p Principal, answer []byte, exp time.Time, pub []byte, alg int,
	now time.Time) (string, error) {
	dev, err := d.active(ctx, p)
	if err != nil {
		return "", err
	}
	if !now.Before(exp) || exp.After(now.Add(challengeTTL)) ||
		!hmac.Equal(answer, d.challengeSecret(p, dev.KeyID, exp)) {
		return "", ErrBadChallenge
	}
	u := keys.Recipient(p.UID)
	res, err := rotateScript.Run(ctx, d.rdb, []string{u.Devices(), u.Notices()}, p.DeviceID, dev.KeyID,
		record(alg, pub, dev.tokenHash, dev.Created), now.UnixMilli(), u.Channel()).Text()
	if err != nil {
		return "", fmt.Errorf("rotate key: %w", err)
	}
	switch res {
	case "ok":
		return e2e.KeyID(pub), nil
	case "no_such":
		return "", ErrBadToken
	case "key_changed":
		return "", ErrBadChallenge
	}
	return "", fmt.Errorf("rotate key: unexpected reply %q", res)
}

// AckNotices records that p has shown the notices ids: its Receive sends them no more.
func (d *Devices) AckNotices(ctx context.Context, p Principal, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	u := keys.Recipient(p.UID)
	args := []any{p.DeviceID}
	for _, id := range ids {
		args = append(args, id)
	}
	if err := noticeAckScript.Run(ctx, d.rdb, []string{u.NoticeCursors(), u.Notices()}, args...).Err(); err != nil {
		return fmt.Errorf("ack notices: %w", err)
	}
	return nil
}

// Authenticate returns the device a token belongs to, or ErrBadToken. A pending
// device authenticates with Pending set; it is not cached, so that its approval
// counts at once.
func (d *Devices) Authenticate(ctx context.Context, token string, now time.Time) (Principal, error) {
	h := hash(token)
	p, err := d.tokens.Get(h, now, func() (Principal, error) {
		p, ok := tokenPrincipal(token)
		if !ok {
			return Principal{}, ErrBadToken
		}
		u := keys.Recipient(p.UID)
		var active, pending *redis.StringCmd
		if _, err := d.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
			active, pending = pl.HGet(ctx, u.Devices(), p.DeviceID), pl.HGet(ctx, u.PendingDevices(), p.DeviceID)
			return nil
		}); err != nil && !errors.Is(err, redis.Nil) {
			return Principal{}, fmt.Errorf("authenticate device: %w", err)
		}
		rec, err := active.Result()
		if errors.Is(err, redis.Nil) {
			rec, err = pending.Result()
			p.Pending = true
		}
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
	if err == nil && p.Pending {
		d.tokens.Forget(h)
	}
	return p, err
}

// tokenPrincipal is the device a token names, if it has a device token's shape:
// hd_<uid>_<device id>_<secret>.
func tokenPrincipal(token string) (Principal, bool) {
	parts := strings.Split(token, "_")
	if len(parts) != 4 || parts[0] != "hd" || len(parts[1]) != 26 || parts[2] == "" || parts[3] == "" {
		return Principal{}, false
	}
	return Principal{UID: parts[1], DeviceID: parts[2]}, true
}

// WellFormedToken reports whether token has a device token's shape, which says
// nothing of whether it is valid (Authenticate): for refusing a malformed one without
// asking Redis.
func WellFormedToken(token string) bool {
	_, ok := tokenPrincipal(token)
	return ok
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
