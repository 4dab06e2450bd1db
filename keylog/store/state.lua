-- Answers the state (tree.lua) without changing anything.
--
-- KEYS: leaves, size. ARGV: node prefix, block, max pending.
return state(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
