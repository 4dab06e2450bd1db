-- Stores the inner nodes that leaves [old size, new size) complete and raises the
-- tree size to new size, unless another gateway raised it further already. Every
-- node is a function of the leaf hashes before it, which never change, so gateways
-- integrating the same leaves at once write the same bytes, and the size only grows.
-- Answers the tree size after.
--
-- KEYS: leaves, size. ARGV: node prefix, block, new size, then level, index and hash
-- of each node.
local prefix, block = ARGV[1], tonumber(ARGV[2])
local new = tonumber(ARGV[3])
if new > redis.call('LLEN', KEYS[1]) then
  return redis.error_reply('keylog: tree size ' .. ARGV[3] .. ' beyond the leaves')
end
for i = 4, #ARGV, 3 do
  set_node(prefix, block, tonumber(ARGV[i]), tonumber(ARGV[i + 1]), ARGV[i + 2])
end
local size = tonumber(redis.call('GET', KEYS[2]) or '0')
if new > size then
  redis.call('SET', KEYS[2], ARGV[3])
  size = new
end
return size
