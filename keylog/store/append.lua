-- Appends one leaf: pushes it, stores its hash as node (0, index), and answers its
-- index followed by the state (tree.lua), all in one step, so that concurrent
-- appends from any number of gateways take distinct, consecutive indexes.
--
-- KEYS: leaves, size. ARGV: node prefix, block, max pending, leaf, leaf hash.
local prefix, block = ARGV[1], tonumber(ARGV[2])
local index = redis.call('RPUSH', KEYS[1], ARGV[4]) - 1
set_node(prefix, block, 0, index, ARGV[5])
local out = state(KEYS[1], KEYS[2], prefix, block, tonumber(ARGV[3]))
table.insert(out, 1, index)
return out
