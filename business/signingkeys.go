package business

import (
	"context"
	"crypto/ed25519"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/heraldhq/herald/e2e"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
)

// A business's signing keys form chains: its first key needs nothing, and each later
// key is endorsed by a key the business has in use (e2e.EndorseSigningKey), so that a
// device that trusts one key of a chain can trust the keys after it without asking
// its person, and nobody without a key of the business (a gateway, someone with Redis
// access) can make it trust another. Only the operator starts a new chain, in place of
// keys the business lost (ReplaceSigningKey); every device that trusted the old chain
// sees that as a key change.

// MaxSigningKeys is how many signing keys a business may have in use (not retired) at
// once: each is on every delivery's profile, so the record stays small.
const MaxSigningKeys = 16

// MaxChainLinks is how many links a key's chain has at most (Profile.SigningKeyChain):
// a device that trusted a key more rotations ago than that sees a key change.
const MaxChainLinks = 16

// maxTxAttempts is how many times a change of the signing keys is tried when the
// keys change under it (another change of them at the same moment).
const maxTxAttempts = 16

// Errors of the signing keys, for callers to branch on.
var (
	// ErrSigningKeyExists: the business has another signing key, and the call brought
	// no endorsement by a key of the business.
	ErrSigningKeyExists = errors.New("the business has another signing key")
	// ErrSigningKeyReused: the key was the business's before and is not its current
	// one; a rotation is to a new key.
	ErrSigningKeyReused = errors.New("the business had that signing key before")
	// ErrBadEndorsement: the endorsement is not the endorsing key's signature over the
	// new key for this business (it wraps e2e.ErrBadEndorsement).
	ErrBadEndorsement = errors.New("the endorsement does not verify")
	// ErrEndorserNotInUse: the endorsing key is not a key the business has in use
	// (unknown, retired, or set aside by an operator's replacement).
	ErrEndorserNotInUse = errors.New("the endorsing key is not a signing key the business has in use")
	// ErrTooManySigningKeys: the business has MaxSigningKeys keys in use; it must
	// retire one before it rotates again.
	ErrTooManySigningKeys = errors.New("the business has too many signing keys in use")
	// ErrNoSuchSigningKey: the business keeps no signing key in use with that id.
	ErrNoSuchSigningKey = errors.New("no such signing key")
	// ErrCurrentSigningKey: the key is the business's current one, which only a
	// rotation or a replacement retires.
	ErrCurrentSigningKey = errors.New("the business's current signing key")
)

// Endorsement is what makes a new signing key trusted: the signature of the business's
// key with id By over it (e2e.EndorseSigningKey).
type Endorsement struct {
	By        string
	Signature []byte
}

// KeyLink is one link of a signing key's chain, as deliveries carry it.
type KeyLink struct {
	PublicKey []byte
	// Endorsement is the signature over PublicKey by the key with id EndorsedBy (the
	// next link's, if the chain goes on); both empty for a first key or a replacement.
	Endorsement []byte
	EndorsedBy  string
	// Replaced is set for a key the operator set in place of lost ones.
	Replaced bool
}

// SetSigningKey registers pub, a 32-byte Ed25519 public key, as the business's current
// signing key. The first key needs no endorsement. A later one needs e, an endorsement
// by a key the business has in use: without it the call is ErrSigningKeyExists, so
// that a sender without the key never replaces it; with a key not in use it is
// ErrEndorserNotInUse, and with a signature that does not verify ErrBadEndorsement.
// Registering the current key again changes nothing; another key the business had is
// ErrSigningKeyExists without an endorsement, and ErrSigningKeyReused with one.
func (s *Store) SetSigningKey(ctx context.Context, id string, pub []byte, e *Endorsement) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("set signing key: a %d-byte key, want %d", len(pub), ed25519.PublicKeySize)
	}
	kid := e2e.KeyID(pub)
	return s.changeSigningKeys(ctx, id, "set signing key", func(r *keys.BusinessRecord) (bool, error) {
		rec := keys.SigningKeyRecord{PublicKey: pub, Origin: keys.SigningKeyFirst, State: keys.SigningKeyInUse}
		_, had := r.SigningKeys[kid]
		switch {
		case r.CurrentSigningKey == kid:
			return false, nil
		case e == nil && r.CurrentSigningKey != "":
			return false, ErrSigningKeyExists
		case had:
			return false, ErrSigningKeyReused
		case e != nil:
			by, ok := r.SigningKeys[e.By]
			if !ok || by.State != keys.SigningKeyInUse {
				return false, ErrEndorserNotInUse
			}
			if err := e2e.VerifyEndorsement(by.PublicKey, id, pub, e.Signature); err != nil {
				return false, fmt.Errorf("%w: %w", ErrBadEndorsement, err)
			}
			rec.Origin, rec.EndorsedBy, rec.Endorsement = keys.SigningKeyEndorsed, e.By, e.Signature
		}
		if inUse(r) >= MaxSigningKeys {
			return false, ErrTooManySigningKeys
		}
		r.SigningKeys[kid] = rec
		r.CurrentSigningKey = kid
		return true, nil
	})
}

// ReplaceSigningKey is the operator's act for a business that lost its keys: pub
// becomes its current signing key with nothing vouching for it, and every key before
// it is set aside (messages signed with one are still delivered with it, but it
// endorses no key), so that whoever holds a lost key cannot vouch for a key of their
// own. Every device that trusted an earlier key sees a key change. Replacing with the
// current key changes nothing; another key the business had is ErrSigningKeyReused.
// It is not held to MaxSigningKeys: a business that lost its keys must not be stuck.
func (s *Store) ReplaceSigningKey(ctx context.Context, id string, pub []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("replace signing key: a %d-byte key, want %d", len(pub), ed25519.PublicKeySize)
	}
	kid := e2e.KeyID(pub)
	return s.changeSigningKeys(ctx, id, "replace signing key", func(r *keys.BusinessRecord) (bool, error) {
		if r.CurrentSigningKey == kid {
			return false, nil
		}
		if _, had := r.SigningKeys[kid]; had {
			return false, ErrSigningKeyReused
		}
		for k, rec := range r.SigningKeys {
			if rec.State == keys.SigningKeyInUse {
				rec.State = keys.SigningKeySetAside
				r.SigningKeys[k] = rec
			}
		}
		r.SigningKeys[kid] = keys.SigningKeyRecord{PublicKey: pub, Origin: keys.SigningKeyReplaced, State: keys.SigningKeyInUse}
		r.CurrentSigningKey = kid
		return true, nil
	})
}

// RetireSigningKey retires the business's signing key with id keyID: messages still
// queued that were signed with it are delivered with the current key from now on (and
// fail on devices), and it endorses no more keys. It is ErrNoSuchSigningKey for a key
// the business does not have (or retired already), and ErrCurrentSigningKey for its
// current key.
func (s *Store) RetireSigningKey(ctx context.Context, id, keyID string) error {
	return s.changeSigningKeys(ctx, id, "retire signing key", func(r *keys.BusinessRecord) (bool, error) {
		rec, ok := r.SigningKeys[keyID]
		switch {
		case !ok || rec.State == keys.SigningKeyRetired:
			return false, ErrNoSuchSigningKey
		case keyID == r.CurrentSigningKey:
			return false, ErrCurrentSigningKey
		}
		rec.State = keys.SigningKeyRetired
		r.SigningKeys[keyID] = rec
		return true, nil
	})
}

// changeSigningKeys applies change to the business's signing keys as one atomic step:
// it reads the record, lets change edit its keys (reporting whether it did), drops the
// retired keys no chain needs any more, and writes the keys back unless they (or the
// business) changed meanwhile, in which case it starts again (signingkeys.lua: the
// record's other fields, such as the pending bytes the forwarder counts many times a
// second, may change freely). The business must exist (ErrNotFound).
func (s *Store) changeSigningKeys(ctx context.Context, id, what string, change func(*keys.BusinessRecord) (bool, error)) error {
	key := keys.Business(id).Record()
	for range maxTxAttempts {
		h, err := s.rdb.HGetAll(ctx, key).Result()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		r, err := keys.ParseBusiness(h)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if r.DisplayName == "" {
			return ErrNotFound
		}
		if r.SigningKeys == nil {
			r.SigningKeys = map[string]keys.SigningKeyRecord{}
		}
		changed, err := change(&r)
		if err != nil || !changed {
			return err
		}
		var gone []any
		for _, k := range unchained(r.SigningKeys) {
			delete(r.SigningKeys, k)
			gone = append(gone, keys.BusinessSigningKeyOf(k))
		}
		set := keys.BusinessRecord{CurrentSigningKey: r.CurrentSigningKey, SigningKeys: r.SigningKeys}.Fields()
		args := append(append([]any{signingFingerprint(h), len(set) / 2}, set...), gone...)
		written, err := signingKeysScript.Run(ctx, s.rdb, []string{key}, args...).Int()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if written == 1 {
			s.profiles.Forget(id)
			return nil
		}
	}
	return fmt.Errorf("%s: the business's signing keys kept changing; try again", what)
}

// signingFingerprint is what signingkeys.lua compares to see that a business's keys
// are as read: its name and signing-key fields, as "field=value\n" lines in byte order.
func signingFingerprint(h map[string]string) string {
	var lines []string
	for f, v := range h {
		if f == keys.BusinessName || f == keys.BusinessSigningKey || strings.HasPrefix(f, keys.BusinessSigningKeyOf("")) {
			lines = append(lines, f+"="+v+"\n")
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "")
}

//go:embed signingkeys.lua
var signingKeysSource string

var signingKeysScript = rscript.New(keys.Lua(signingKeysSource))

// inUse counts the keys of r not retired.
func inUse(r *keys.BusinessRecord) int {
	n := 0
	for _, k := range r.SigningKeys {
		if k.State != keys.SigningKeyRetired {
			n++
		}
	}
	return n
}

// unchained are the ids of the retired keys in ks that no chain of a key not retired
// passes through: nothing will ever need them.
func unchained(ks map[string]keys.SigningKeyRecord) []string {
	needed := map[string]bool{}
	for id, k := range ks {
		if k.State != keys.SigningKeyRetired {
			for _, l := range chainIDs(ks, id) {
				needed[l] = true
			}
		}
	}
	var gone []string
	for _, id := range slices.Sorted(maps.Keys(ks)) {
		if !needed[id] {
			gone = append(gone, id)
		}
	}
	return gone
}

// chainIDs are the ids on the chain of key id in ks, from id back to a first key or a
// replacement, at most MaxChainLinks of them; the chain ends early at a key ks does
// not hold.
func chainIDs(ks map[string]keys.SigningKeyRecord, id string) []string {
	var ids []string
	for len(ids) < MaxChainLinks {
		k, ok := ks[id]
		if !ok {
			break
		}
		ids = append(ids, id)
		if k.Origin != keys.SigningKeyEndorsed {
			break
		}
		id = k.EndorsedBy
	}
	return ids
}

// chainOf is the chain of key id in ks, as deliveries carry it.
func chainOf(ks map[string]keys.SigningKeyRecord, id string) []KeyLink {
	ids := chainIDs(ks, id)
	links := make([]KeyLink, len(ids))
	for i, id := range ids {
		k := ks[id]
		links[i] = KeyLink{PublicKey: k.PublicKey, Endorsement: k.Endorsement, EndorsedBy: k.EndorsedBy,
			Replaced: k.Origin == keys.SigningKeyReplaced}
	}
	return links
}
