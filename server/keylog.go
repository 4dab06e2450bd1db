package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/heraldhq/herald/delivery"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/keylog"
	"github.com/heraldhq/herald/keylog/store"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
)

// The key log records every device key event (registered, approved, rotated, removed)
// with its owner's uid, and LookupRecipient proves each key it lists: a key a business
// is given is one everyone can see was published. A device whose current key has no
// leaf (its event was not logged: Redis failed after the registration, or someone
// wrote the device straight into Redis) is logged when a lookup first lists it, so
// that nothing a business seals to is missing from the log; the person's audit shows
// it either way.

// keyLogService is the KeyLogService.
type keyLogService struct {
	*Server
	heraldv1.UnimplementedKeyLogServiceServer
}

// GetCheckpoint returns the latest signed checkpoint.
func (k *keyLogService) GetCheckpoint(ctx context.Context, _ *heraldv1.GetCheckpointRequest) (*heraldv1.GetCheckpointResponse, error) {
	if k.keyLog == nil {
		return nil, noKeyLog()
	}
	cp, err := k.keyLog.Checkpoint(ctx)
	if err != nil {
		return nil, k.storeError(ctx, "key log checkpoint", err)
	}
	return &heraldv1.GetCheckpointResponse{Checkpoint: cp.Note, LogPublicKey: k.logSigner.VerifierKey()}, nil
}

// GetConsistencyProof proves that one tree size extends another.
func (k *keyLogService) GetConsistencyProof(ctx context.Context, req *heraldv1.GetConsistencyProofRequest) (*heraldv1.GetConsistencyProofResponse, error) {
	if k.keyLog == nil {
		return nil, noKeyLog()
	}
	if req.GetOldSize() > req.GetNewSize() {
		return nil, invalid([]*violation{{Field: "old_size", Description: "must be at most new_size"}})
	}
	p, err := k.keyLog.ConsistencyProof(ctx, req.GetOldSize(), req.GetNewSize())
	if errors.Is(err, store.ErrOutOfRange) {
		return nil, invalid([]*violation{{Field: "new_size", Description: "beyond the log's size"}})
	}
	if err != nil {
		return nil, k.storeError(ctx, "key log consistency", err)
	}
	return &heraldv1.GetConsistencyProofResponse{Proof: p}, nil
}

func noKeyLog() error {
	return withInfo(codes.FailedPrecondition, "this gateway keeps no key log (heraldd --log-key)", "NO_KEY_LOG")
}

// logDeviceKey appends a device key event to the key log and to its owner's index. It
// is a no-op without a key log.
func (s *Server) logDeviceKey(ctx context.Context, kind keylog.Kind, uid, deviceID string, alg int, pub []byte) (uint64, error) {
	if s.keyLog == nil {
		return 0, nil
	}
	i, err := s.keyLog.Append(ctx, keylog.Event{Kind: kind, Owner: uid, ID: deviceID, Algorithm: e2e.Algorithm(alg).String(),
		PublicKey: pub, Time: s.now()})
	if err != nil {
		return 0, fmt.Errorf("log %s: %w", kind, err)
	}
	if err := s.cfg.Redis.RPush(ctx, keys.Recipient(uid).KeyLogEvents(), i).Err(); err != nil {
		return 0, fmt.Errorf("index %s: %w", kind, err)
	}
	return i, nil
}

// noteDeviceKey logs a device key event after the change it records was made; a
// failure is logged, not returned: the change stands, and the next lookup that lists
// the key logs it (deviceProofs).
func (s *Server) noteDeviceKey(ctx context.Context, kind keylog.Kind, uid, deviceID string, alg int, pub []byte) {
	if _, err := s.logDeviceKey(ctx, kind, uid, deviceID, alg, pub); err != nil {
		s.log.WarnContext(ctx, "key log append failed; the next lookup logs the key", "kind", kind.String(), "err", err)
	}
}

// personEvents reads the person's logged key events, oldest first.
func (s *Server) personEvents(ctx context.Context, uid string) ([]uint64, [][]byte, error) {
	vals, err := s.cfg.Redis.LRange(ctx, keys.Recipient(uid).KeyLogEvents(), 0, -1).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("read key log index: %w", err)
	}
	idx := make([]uint64, 0, len(vals))
	for _, v := range vals {
		i, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("key log index entry %q: %w", v, err)
		}
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return nil, nil, nil
	}
	leaves, err := s.keyLog.LeavesAt(ctx, idx)
	if err != nil {
		return nil, nil, err
	}
	return idx, leaves, nil
}

// deviceProofs returns a checkpoint and, for each device, the proof of the latest
// leaf that published its current key, logging the key first when no leaf does.
func (s *Server) deviceProofs(ctx context.Context, uid string, devs []delivery.Device) ([]byte, map[string]*heraldv1.KeyProof, error) {
	idx, leaves, err := s.personEvents(ctx, uid)
	if err != nil {
		return nil, nil, err
	}
	latest := map[string]int{} // device id -> position in idx of its key's latest publication
	for p, leaf := range leaves {
		e, err := keylog.Parse(leaf)
		if err != nil || e.Owner != uid {
			continue
		}
		switch e.Kind {
		case keylog.DeviceKeyAdded, keylog.DeviceKeyApproved, keylog.DeviceKeyRotated:
			latest[e.ID+"/"+string(e.PublicKey)] = p
		}
	}
	at := map[string]uint64{}
	leafOf := map[string][]byte{}
	for _, d := range devs {
		if p, ok := latest[d.ID+"/"+string(d.PublicKey)]; ok {
			at[d.ID], leafOf[d.ID] = idx[p], leaves[p]
			continue
		}
		i, err := s.logDeviceKey(ctx, keylog.DeviceKeyAdded, uid, d.ID, d.Algorithm, d.PublicKey)
		if err != nil {
			return nil, nil, err
		}
		leaf, err := s.keyLog.Leaf(ctx, i)
		if err != nil {
			return nil, nil, err
		}
		at[d.ID], leafOf[d.ID] = i, leaf
	}
	cp, err := s.keyLog.Checkpoint(ctx)
	if err != nil {
		return nil, nil, err
	}
	ids := make([]string, 0, len(at))
	want := make([]uint64, 0, len(at))
	for id, i := range at {
		ids, want = append(ids, id), append(want, i)
	}
	ps, err := s.keyLog.InclusionProofs(ctx, want, cp.Size)
	if err != nil {
		return nil, nil, err
	}
	proofs := map[string]*heraldv1.KeyProof{}
	for n, id := range ids {
		proofs[id] = &heraldv1.KeyProof{LeafIndex: want[n], Leaf: leafOf[id], Inclusion: ps[n]}
	}
	return cp.Note, proofs, nil
}

// AuditKeys returns the person's key events with their proofs.
func (r *recipientService) AuditKeys(ctx context.Context, _ *heraldv1.AuditKeysRequest) (*heraldv1.AuditKeysResponse, error) {
	if r.keyLog == nil {
		return nil, noKeyLog()
	}
	p := deviceFrom(ctx)
	idx, leaves, err := r.personEvents(ctx, p.UID)
	if err != nil {
		return nil, r.storeError(ctx, "audit keys", err)
	}
	cp, err := r.keyLog.Checkpoint(ctx)
	if err != nil {
		return nil, r.storeError(ctx, "audit keys", err)
	}
	resp := &heraldv1.AuditKeysResponse{Checkpoint: cp.Note}
	ps, err := r.keyLog.InclusionProofs(ctx, idx, cp.Size)
	if err != nil {
		return nil, r.storeError(ctx, "audit keys", err)
	}
	for n, i := range idx {
		resp.Events = append(resp.Events, &heraldv1.KeyProof{LeafIndex: i, Leaf: leaves[n], Inclusion: ps[n]})
	}
	return resp, nil
}

// Business keys are logged as they are registered, rotated, replaced or retired, and
// indexed per business by key id. Every delivery carries the proof of the key that
// signed it, from a cache: proofs against a checkpoint a few seconds old are as good
// as fresh ones (the device checks the checkpoint extends, or is extended by, the
// newest it saw), and one round trip set per key and proofCacheTTL is all a
// delivery stream costs.

// noteBusinessKey logs a business key event after the change it records was made. A
// key already published is not logged again (a repeated SetSigningKey); a failure is
// logged, not returned: the business's next SetSigningKey with the key logs it (the
// SDK and the CLI register their key before they send). Until then, devices with a
// key log keep its messages unopened. Unlike device keys, a business key is never
// logged on the way out: a key that came into the business's record any other way
// than by the business API or the operator (written into Redis) is not published,
// and devices with a key log refuse what it signed.
func (s *Server) noteBusinessKey(ctx context.Context, kind keylog.Kind, biz string, pub []byte) {
	if s.keyLog == nil {
		return
	}
	if _, err := s.logBusinessKey(ctx, kind, biz, pub); err != nil {
		s.log.WarnContext(ctx, "key log append failed; the business's next SetSigningKey logs the key", "kind", kind.String(),
			"business_id", biz, "err", err)
	}
}

// logBusinessKey appends a business key event and indexes it, unless the key was
// published before and the event is not a retirement. It returns the index of the
// key's publication.
func (s *Server) logBusinessKey(ctx context.Context, kind keylog.Kind, biz string, pub []byte) (uint64, error) {
	kid := e2e.KeyID(pub)
	idx := keys.Business(biz).KeyLogIndex()
	if kind != keylog.BusinessKeyRetired {
		switch v, err := s.cfg.Redis.HGet(ctx, idx, kid).Uint64(); {
		case err == nil:
			return v, nil
		case !errors.Is(err, redis.Nil):
			return 0, fmt.Errorf("read key log index: %w", err)
		}
	}
	i, err := s.keyLog.Append(ctx, keylog.Event{Kind: kind, Owner: biz, ID: kid, Algorithm: "ed25519", PublicKey: pub,
		Time: s.now()})
	if err != nil {
		return 0, fmt.Errorf("log %s: %w", kind, err)
	}
	if kind == keylog.BusinessKeyRetired {
		return i, nil
	}
	if err := s.cfg.Redis.HSet(ctx, idx, kid, i).Err(); err != nil {
		return 0, fmt.Errorf("index %s: %w", kind, err)
	}
	return i, nil
}

// proofCacheTTL is how long a business key's proof is reused for deliveries.
const proofCacheTTL = 10 * time.Second

type cachedProof struct {
	proof   *heraldv1.KeyProof
	note    []byte
	expires time.Time
}

// errNotPublished is a business key that no leaf of the key log publishes.
var errNotPublished = errors.New("the business key is not published in the key log")

// businessKeyProof returns the proof that business biz's key pub was published, and
// the checkpoint it is for.
func (s *Server) businessKeyProof(ctx context.Context, biz string, pub []byte) (*heraldv1.KeyProof, []byte, error) {
	ck := biz + "/" + e2e.KeyID(pub)
	now := s.now()
	if v, ok := s.proofs.Load(ck); ok {
		if c := v.(cachedProof); now.Before(c.expires) {
			return c.proof, c.note, nil
		}
	}
	i, err := s.cfg.Redis.HGet(ctx, keys.Business(biz).KeyLogIndex(), e2e.KeyID(pub)).Uint64()
	if errors.Is(err, redis.Nil) {
		return nil, nil, errNotPublished
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read key log index: %w", err)
	}
	leaves, err := s.keyLog.LeavesAt(ctx, []uint64{i})
	if err != nil {
		return nil, nil, err
	}
	if e, err := keylog.Parse(leaves[0]); err != nil || e.Owner != biz || string(e.PublicKey) != string(pub) {
		return nil, nil, fmt.Errorf("%w: the index names leaf %d, which publishes another key", errNotPublished, i)
	}
	cp, err := s.keyLog.Checkpoint(ctx)
	if err != nil {
		return nil, nil, err
	}
	ps, err := s.keyLog.InclusionProofs(ctx, []uint64{i}, cp.Size)
	if err != nil {
		return nil, nil, err
	}
	c := cachedProof{proof: &heraldv1.KeyProof{LeafIndex: i, Leaf: leaves[0], Inclusion: ps[0]}, note: cp.Note,
		expires: now.Add(proofCacheTTL)}
	s.proofs.Store(ck, c)
	return c.proof, c.note, nil
}
