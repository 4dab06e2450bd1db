// Package rscript is the one way Herald runs Lua scripts on Redis: by hash, alone
// (Script.Run) or many calls in one pipeline (Run), sending the source only when Redis
// has forgotten the script (after a restart, a failover or SCRIPT FLUSH), so callers
// never see NOSCRIPT.
//
// What rscript itself repeats is safe: EVALSHA either runs the script or fails with
// NOSCRIPT having run nothing, and only then is the call sent again as EVAL. What the
// Redis client repeats is not rscript's to prevent: a client configured to retry
// (go-redis's MaxRetries, a cluster client's redirects) sends a call again after a
// network error, when the script may have run already. So every script is written to
// be safe to run twice: the admission and state-change scripts are idempotent (a
// repeat finds the first run's work and reports a duplicate or changes nothing), and
// a repeated lease (lease.lua, allowance.lua) takes tokens or units a second time that
// no gateway holds, which under-admits for a while and never over-admits.
package rscript

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Script is a Lua script with its SHA-1, built once (usually in a package variable)
// and run many times.
type Script struct {
	src  string
	hash string
}

// New returns the script with source src.
func New(src string) *Script {
	h := sha1.Sum([]byte(src))
	return &Script{src: src, hash: hex.EncodeToString(h[:])}
}

// Hash is the script's SHA-1, as EVALSHA names it.
func (s *Script) Hash() string { return s.hash }

// Source is the script's source, as EVAL sends it.
func (s *Script) Source() string { return s.src }

// Scripter is the part of a Redis client that Script.Run needs; *redis.Client,
// *redis.ClusterClient and *redis.Ring have it. (A redis.Pipeliner has it too, but a
// queued command has no reply to fall back on: in a pipeline, use Run.)
type Scripter interface {
	Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd
	EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd
}

// Run runs the script once with keys and args: by hash, and with its source when
// Redis does not know it. The command's error is the script's or the connection's,
// never NOSCRIPT.
func (s *Script) Run(ctx context.Context, rdb Scripter, keys []string, args ...any) *redis.Cmd {
	cmd := rdb.EvalSha(ctx, s.hash, keys, args...)
	if isNoScript(cmd.Err()) {
		return rdb.Eval(ctx, s.src, keys, args...)
	}
	return cmd
}

// Call is one call of a script in a pipeline.
type Call struct {
	// Script is the script to call; nil means Run's s.
	Script *Script
	Keys   []string
	Args   []any
}

func (c Call) script(s *Script) *Script {
	if c.Script != nil {
		return c.Script
	}
	return s
}

// Pipeliner is the part of a Redis client that Run needs.
type Pipeliner interface {
	Pipeline() redis.Pipeliner
}

// Run runs every call (of s, or of the call's own Script) in one pipeline (one round
// trip, or two when Redis had to be told a script again) and returns one result per
// call, in order. The error is a connection level error; script errors are in the
// results.
//
// Calls must not depend on one another's order: a call that Redis answered NOSCRIPT
// runs again after every other call of the pipeline has run.
func Run(ctx context.Context, rdb Pipeliner, s *Script, calls []Call) ([]*redis.Cmd, error) {
	return RunAfter(ctx, rdb, nil, s, calls)
}

// RunAfter is Run with the plain commands that first queues sent ahead of the calls,
// in the same pipeline: a command that must take effect before the calls (on a single
// Redis it always does, since Redis cannot forget a command as it forgets a script).
// The caller reads its commands' results from the commands first queued.
func RunAfter(ctx context.Context, rdb Pipeliner, first func(redis.Pipeliner), s *Script, calls []Call) ([]*redis.Cmd, error) {
	if len(calls) == 0 && first == nil {
		return nil, nil
	}
	pipe := rdb.Pipeline()
	if first != nil {
		first(pipe)
	}
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		cmds[i] = pipe.EvalSha(ctx, c.script(s).hash, c.Keys, c.Args...)
	}
	sent, err := pipe.Exec(ctx)
	if err == nil {
		return cmds, nil
	}
	if !anyNoScript(cmds) {
		if isConnErr(sent) {
			return nil, err
		}
		return cmds, nil
	}
	pipe = rdb.Pipeline()
	redo := map[int]*redis.Cmd{}
	for i, c := range calls {
		if isNoScript(cmds[i].Err()) {
			redo[i] = pipe.Eval(ctx, c.script(s).src, c.Keys, c.Args...)
		}
	}
	if sent, err := pipe.Exec(ctx); err != nil && isConnErr(sent) {
		return nil, err
	}
	for i, c := range redo {
		cmds[i] = c
	}
	return cmds, nil
}

func anyNoScript(cmds []*redis.Cmd) bool {
	for _, c := range cmds {
		if isNoScript(c.Err()) {
			return true
		}
	}
	return false
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// isConnErr reports whether a command failed for lack of Redis rather than by a
// script error reply, which go-redis gives as redis.Error.
func isConnErr(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		err := c.Err()
		if err == nil || errors.Is(err, redis.Nil) {
			continue
		}
		var re redis.Error
		if !errors.As(err, &re) {
			return true
		}
	}
	return false
}
