// Package rscript runs Lua scripts on Redis by hash, many calls in one pipeline, and
// falls back to sending the source when Redis has forgotten the script (after a
// restart or SCRIPT FLUSH), so callers never see NOSCRIPT.
package rscript

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Call is one call of a script.
type Call struct {
	// Script is the script to call; nil means Run's s.
	Script *redis.Script
	Keys   []string
	Args   []any
}

func (c Call) script(s *redis.Script) *redis.Script {
	if c.Script != nil {
		return c.Script
	}
	return s
}

// Pipeliner is the part of a Redis client that rscript needs.
type Pipeliner interface {
	Pipeline() redis.Pipeliner
}

// Run runs every call (of s, or of the call's own Script) in one pipeline (one round trip, or two when Redis had to be
// told the script again) and returns one result per call. The error is a connection
// level error; script errors are in the results.
func Run(ctx context.Context, rdb Pipeliner, s *redis.Script, calls []Call) ([]*redis.Cmd, error) {
	if len(calls) == 0 {
		return nil, nil
	}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		cmds[i] = c.script(s).EvalSha(ctx, pipe, c.Keys, c.Args...)
	}
	_, err := pipe.Exec(ctx)
	if err == nil {
		return cmds, nil
	}
	if !anyNoScript(cmds) {
		if isConnErr(cmds) {
			return nil, err
		}
		return cmds, nil
	}
	pipe = rdb.Pipeline()
	redo := map[int]*redis.Cmd{}
	for i, c := range calls {
		if isNoScript(cmds[i].Err()) {
			redo[i] = c.script(s).Eval(ctx, pipe, c.Keys, c.Args...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && isConnErr(values(redo)) {
		return nil, err
	}
	for i, c := range redo {
		cmds[i] = c
	}
	return cmds, nil
}

func values(m map[int]*redis.Cmd) []*redis.Cmd {
	out := make([]*redis.Cmd, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	return out
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
func isConnErr(cmds []*redis.Cmd) bool {
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
