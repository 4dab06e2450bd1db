package store

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
	"github.com/heraldhq/herald/keylog"
	"github.com/redis/go-redis/v9"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

var (
	//go:embed tree.lua
	treeLua string
	//go:embed append.lua
	appendLua string
	//go:embed state.lua
	stateLua string
	//go:embed integrate.lua
	integrateLua string

	appendScript    = rscript.New(treeLua + appendLua)
	stateScript     = rscript.New(treeLua + stateLua)
	integrateScript = rscript.New(treeLua + integrateLua)
)

// Errors the Log returns, wrapped with detail.
var (
	// ErrOutOfRange means a leaf index or tree size beyond the tree the log holds (or
	// an old size above a new one). Ask for a checkpoint first; its size is in range.
	ErrOutOfRange = errors.New("keylog: beyond the log's tree")

	// ErrCorrupt means the log's storage lacks a node or leaf it must hold: Redis lost
	// data or someone damaged it. No proof can be given; an operator must look.
	ErrCorrupt = errors.New("keylog: storage corrupt")
)

// maxPending is how many leaf hashes not yet in the tree one state reply carries; a
// gateway that finds more integrates them in rounds.
const maxPending = 1024

// ranges makes the compact ranges that integration extends, with RFC 6962's node hash.
var ranges = &compact.RangeFactory{Hash: keylog.NodeHash}

// Log is the key log kept in Redis: one per gateway, all gateways sharing the same
// log. It is safe for concurrent use.
type Log struct {
	rdb    redis.UniversalClient
	signer *keylog.Signer
	// last is the checkpoint signed last, handed out again while the tree has not
	// grown.
	last atomic.Pointer[keylog.Signed]
}

// New returns the log kept in rdb, whose checkpoints signer signs.
func New(rdb redis.UniversalClient, signer *keylog.Signer) *Log {
	return &Log{rdb: rdb, signer: signer}
}

// Append adds the event e to the log and returns its leaf index once the leaf is in
// the tree: any checkpoint made after Append returns covers it. e must encode
// (keylog.Encode); an error wrapping keylog.ErrMalformed says it does not and
// nothing was done. Any other error leaves the outcome unknown: the leaf may have been
// appended, and then the next Append or Checkpoint of any gateway puts it in the tree.
func (l *Log) Append(ctx context.Context, e keylog.Event) (uint64, error) {
	leaf, err := keylog.Encode(e)
	if err != nil {
		return 0, err
	}
	vals, err := appendScript.Run(ctx, l.rdb, l.keys(),
		keys.KeyLogNodePrefix(), keys.KeyLogBlock, maxPending, leaf, keylog.LeafHash(leaf)).Slice()
	if err != nil {
		return 0, fmt.Errorf("append to the key log: %w", err)
	}
	if len(vals) == 0 {
		return 0, fmt.Errorf("append to the key log: %w: empty reply", ErrCorrupt)
	}
	index, ok := vals[0].(int64)
	if !ok || index < 0 {
		return 0, fmt.Errorf("append to the key log: %w: reply %v", ErrCorrupt, vals)
	}
	st, err := parseState(vals[1:])
	if err != nil {
		return 0, fmt.Errorf("append to the key log: %w", err)
	}
	if _, _, err := l.integrate(ctx, st, uint64(index)+1); err != nil {
		return 0, fmt.Errorf("append to the key log: leaf %d appended, not yet in the tree: %w", index, err)
	}
	return uint64(index), nil
}

// Checkpoint returns the log's signed checkpoint for its tree as it is now, after
// putting in the tree any leaf that a gateway appended and did not (one that died
// halfway). Its size is at least that of every Append that returned before.
func (l *Log) Checkpoint(ctx context.Context) (keylog.Signed, error) {
	st, err := l.state(ctx)
	if err != nil {
		return keylog.Signed{}, fmt.Errorf("key log checkpoint: %w", err)
	}
	size, root, err := l.integrate(ctx, st, st.count)
	if err != nil {
		return keylog.Signed{}, fmt.Errorf("key log checkpoint: %w", err)
	}
	if last := l.last.Load(); last != nil && last.Size == size && bytes.Equal(last.Root, root) {
		return clone(*last), nil
	}
	s, err := l.signer.Sign(size, root)
	if err != nil {
		return keylog.Signed{}, fmt.Errorf("key log checkpoint: %w", err)
	}
	kept := clone(s)
	l.last.Store(&kept)
	return s, nil
}

// InclusionProof returns the proof that the leaf at index is in the tree of size size
// (that of a checkpoint): the RFC 6962 audit path, lowest hash first, as
// keylog.Verifier.VerifyInclusion takes it. It costs one round trip.
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	if index >= size {
		return nil, fmt.Errorf("inclusion proof: %w: leaf %d in a tree of size %d", ErrOutOfRange, index, size)
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	return l.readProof(ctx, "inclusion proof", size, nodes)
}

// ConsistencyProof returns the proof that the tree of size old is a prefix of the tree
// of size new (the sizes of two checkpoints), as keylog.Verifier.Update takes it:
// empty when old is 0 or equal to new. It costs one round trip.
func (l *Log) ConsistencyProof(ctx context.Context, old, new uint64) ([][]byte, error) {
	if old > new {
		return nil, fmt.Errorf("consistency proof: %w: from size %d to %d", ErrOutOfRange, old, new)
	}
	nodes, err := proof.Consistency(old, new)
	if err != nil {
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	return l.readProof(ctx, "consistency proof", new, nodes)
}

// readProof reads the nodes a proof in the tree of size size is made of, with the tree's
// size to check that it holds them, in one pipeline, and makes the proof.
func (l *Log) readProof(ctx context.Context, what string, size uint64, nodes proof.Nodes) ([][]byte, error) {
	pipe := l.rdb.Pipeline()
	stored := pipe.Get(ctx, keys.KeyLogSize())
	cmds := make([]*redis.StringCmd, len(nodes.IDs))
	for i, id := range nodes.IDs {
		key, off := keys.KeyLogNode(id.Level, id.Index)
		cmds[i] = pipe.GetRange(ctx, key, off, off+keylog.HashSize-1)
	}
	pipe.Exec(ctx) // errors are read command by command
	if err := l.checkSize(stored, size); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	hashes := make([][]byte, len(cmds))
	for i, c := range cmds {
		h, err := c.Bytes()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if len(h) != keylog.HashSize {
			return nil, fmt.Errorf("%s: %w: node %d at level %d missing", what, ErrCorrupt,
				nodes.IDs[i].Index, nodes.IDs[i].Level)
		}
		hashes[i] = h
	}
	p, err := nodes.Rehash(hashes, keylog.NodeHash)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return p, nil
}

// Leaf returns the leaf at index, as it was hashed into the tree (keylog.Parse reads
// it).
func (l *Log) Leaf(ctx context.Context, index uint64) ([]byte, error) {
	leaves, err := l.Leaves(ctx, index, index+1)
	if err != nil {
		return nil, err
	}
	return leaves[0], nil
}

// Leaves returns the leaves from index from to index to (excluded), for an auditor to
// replay the log; to must not be beyond the tree's size. Ask for a few thousand at a
// time: the reply is one Redis reply.
func (l *Log) Leaves(ctx context.Context, from, to uint64) ([][]byte, error) {
	if from > to {
		return nil, fmt.Errorf("key log leaves: %w: from %d to %d", ErrOutOfRange, from, to)
	}
	pipe := l.rdb.Pipeline()
	stored := pipe.Get(ctx, keys.KeyLogSize())
	list := pipe.LRange(ctx, keys.KeyLogLeaves(), int64(from), int64(to)-1)
	pipe.Exec(ctx) // errors are read command by command
	if err := l.checkSize(stored, to); err != nil {
		return nil, fmt.Errorf("key log leaves: %w", err)
	}
	if from == to {
		return [][]byte{}, nil
	}
	vals, err := list.Result()
	if err != nil {
		return nil, fmt.Errorf("key log leaves: %w", err)
	}
	if uint64(len(vals)) != to-from {
		return nil, fmt.Errorf("key log leaves: %w: %d leaves from %d, want %d", ErrCorrupt, len(vals), from, to-from)
	}
	leaves := make([][]byte, len(vals))
	for i, v := range vals {
		leaves[i] = []byte(v)
	}
	return leaves, nil
}

// checkSize checks that the tree, whose stored size cmd read, has at least size
// leaves.
func (l *Log) checkSize(cmd *redis.StringCmd, size uint64) error {
	stored, err := cmd.Uint64()
	if errors.Is(err, redis.Nil) {
		stored, err = 0, nil
	}
	if err != nil {
		return err
	}
	if size > stored {
		return fmt.Errorf("%w: size %d, the tree has %d leaves", ErrOutOfRange, size, stored)
	}
	return nil
}

func (l *Log) keys() []string { return []string{keys.KeyLogLeaves(), keys.KeyLogSize()} }

// state is what the state and append scripts answer.
type state struct {
	size, count uint64
	// rng is the compact range of the tree of size size: the roots of its perfect
	// subtrees, largest first.
	rng [][]byte
	// pending are the hashes of leaves size, size+1, … not yet in the tree.
	pending [][]byte
}

func (l *Log) state(ctx context.Context) (state, error) {
	vals, err := stateScript.Run(ctx, l.rdb, l.keys(), keys.KeyLogNodePrefix(), keys.KeyLogBlock, maxPending).Slice()
	if err != nil {
		return state{}, err
	}
	return parseState(vals)
}

func parseState(vals []any) (state, error) {
	if len(vals) < 2 {
		return state{}, fmt.Errorf("%w: state reply of %d values", ErrCorrupt, len(vals))
	}
	size, ok1 := vals[0].(int64)
	count, ok2 := vals[1].(int64)
	if !ok1 || !ok2 || size < 0 || count < size {
		return state{}, fmt.Errorf("%w: tree size %v, %v leaves", ErrCorrupt, vals[0], vals[1])
	}
	st := state{size: uint64(size), count: uint64(count)}
	hashes := make([][]byte, len(vals)-2)
	for i, v := range vals[2:] {
		s, ok := v.(string)
		if !ok || len(s) != keylog.HashSize {
			return state{}, fmt.Errorf("%w: a node of the tree of size %d is missing", ErrCorrupt, size)
		}
		hashes[i] = []byte(s)
	}
	n := compact.RangeSize(0, st.size)
	if len(hashes) < n {
		return state{}, fmt.Errorf("%w: %d subtree roots for size %d", ErrCorrupt, len(hashes), size)
	}
	st.rng, st.pending = hashes[:n], hashes[n:]
	return st, nil
}

// integrate puts the leaves up to target in the tree, starting from st, and returns
// the size and root of a tree at least that large: the one it built, or st's own
// when it already was.
func (l *Log) integrate(ctx context.Context, st state, target uint64) (uint64, []byte, error) {
	for {
		r, err := ranges.NewRange(0, st.size, st.rng)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if st.size >= target {
			return st.size, root(r), nil
		}
		if len(st.pending) == 0 {
			return 0, nil, fmt.Errorf("%w: the tree has %d of %d leaves and none to add", ErrCorrupt, st.size, target)
		}
		// Each node is stored as level, index, hash, after the size: the integrate
		// script's arguments.
		args := []any{keys.KeyLogNodePrefix(), keys.KeyLogBlock, 0}
		for _, h := range st.pending {
			err := r.Append(h, func(id compact.NodeID, hash []byte) {
				if id.Level > 0 {
					args = append(args, id.Level, id.Index, hash)
				}
			})
			if err != nil {
				return 0, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
		}
		args[2] = r.End()
		if _, err := integrateScript.Run(ctx, l.rdb, l.keys(), args...).Int64(); err != nil {
			return 0, nil, fmt.Errorf("integrate leaves %d to %d: %w", st.size, r.End(), err)
		}
		if r.End() >= target {
			return r.End(), root(r), nil
		}
		if st, err = l.state(ctx); err != nil {
			return 0, nil, err
		}
	}
}

// clone copies s, so that a caller that changes the checkpoint it was handed cannot
// change the one kept for the next caller.
func clone(s keylog.Signed) keylog.Signed {
	s.Root, s.Note = bytes.Clone(s.Root), bytes.Clone(s.Note)
	return s
}

func root(r *compact.Range) []byte {
	h, err := r.GetRootHash(nil)
	if err != nil || h == nil { // begin is 0, so nil means empty
		return keylog.EmptyRoot()
	}
	return h
}

// LeavesAt returns the leaves at the indices given, in one round trip: the events of
// one owner, found by an index of its own.
func (l *Log) LeavesAt(ctx context.Context, indices []uint64) ([][]byte, error) {
	pipe := l.rdb.Pipeline()
	stored := pipe.Get(ctx, keys.KeyLogSize())
	cmds := make([]*redis.StringCmd, len(indices))
	top := uint64(0)
	for i, idx := range indices {
		cmds[i] = pipe.LIndex(ctx, keys.KeyLogLeaves(), int64(idx))
		top = max(top, idx+1)
	}
	pipe.Exec(ctx) // errors are read command by command
	if err := l.checkSize(stored, top); err != nil {
		return nil, fmt.Errorf("key log leaves: %w", err)
	}
	leaves := make([][]byte, len(cmds))
	for i, c := range cmds {
		b, err := c.Bytes()
		if errors.Is(err, redis.Nil) {
			err = fmt.Errorf("%w: leaf %d missing", ErrCorrupt, indices[i])
		}
		if err != nil {
			return nil, fmt.Errorf("key log leaves: %w", err)
		}
		leaves[i] = b
	}
	return leaves, nil
}

// InclusionProofs returns the inclusion proofs of the leaves at the indices given in
// the tree of size size, in one round trip: what InclusionProof returns for each.
func (l *Log) InclusionProofs(ctx context.Context, indices []uint64, size uint64) ([][][]byte, error) {
	all := make([]proof.Nodes, len(indices))
	var ids []compactID
	for i, idx := range indices {
		if idx >= size {
			return nil, fmt.Errorf("inclusion proofs: %w: leaf %d in a tree of size %d", ErrOutOfRange, idx, size)
		}
		n, err := proof.Inclusion(idx, size)
		if err != nil {
			return nil, fmt.Errorf("inclusion proofs: %w", err)
		}
		all[i] = n
		for _, id := range n.IDs {
			ids = append(ids, compactID{id.Level, id.Index})
		}
	}
	// One pipeline for every node of every proof (shared nodes are read once).
	pipe := l.rdb.Pipeline()
	stored := pipe.Get(ctx, keys.KeyLogSize())
	cmds := map[compactID]*redis.StringCmd{}
	for _, id := range ids {
		if _, ok := cmds[id]; !ok {
			key, off := keys.KeyLogNode(id.level, id.index)
			cmds[id] = pipe.GetRange(ctx, key, off, off+keylog.HashSize-1)
		}
	}
	pipe.Exec(ctx) // errors are read command by command
	if err := l.checkSize(stored, size); err != nil {
		return nil, fmt.Errorf("inclusion proofs: %w", err)
	}
	out := make([][][]byte, len(indices))
	for i, n := range all {
		hashes := make([][]byte, len(n.IDs))
		for j, id := range n.IDs {
			h, err := cmds[compactID{id.Level, id.Index}].Bytes()
			if err != nil {
				return nil, fmt.Errorf("inclusion proofs: %w", err)
			}
			if len(h) != keylog.HashSize {
				return nil, fmt.Errorf("inclusion proofs: %w: node %d at level %d missing", ErrCorrupt, id.Index, id.Level)
			}
			hashes[j] = h
		}
		p, err := n.Rehash(hashes, keylog.NodeHash)
		if err != nil {
			return nil, fmt.Errorf("inclusion proofs: %w", err)
		}
		out[i] = p
	}
	return out, nil
}

// compactID names a node of the tree: its level and its index there.
type compactID struct {
	level uint
	index uint64
}
