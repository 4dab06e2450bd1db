-- The key log's tree as internal/keys lays it out (KeyLogNode): node i of level l is
-- 32 bytes at offset 32 * (i % block) of the string prefix .. l .. ':' .. (i // block).
-- The scripts below start with this file. Numbers stay exact: sizes are below 2^53.

local function node_key(prefix, block, level, index)
  local b = math.floor(index / block)
  return prefix .. level .. ':' .. b, (index - b * block) * 32
end

local function get_node(prefix, block, level, index)
  local key, off = node_key(prefix, block, level, index)
  return redis.call('GETRANGE', key, off, off + 31)
end

local function set_node(prefix, block, level, index, hash)
  local key, off = node_key(prefix, block, level, index)
  redis.call('SETRANGE', key, off, hash)
end

-- state answers what an integrator needs: the tree size, how many leaves the list
-- holds, the tree's compact range (the roots of the perfect subtrees that make up
-- the tree, largest first: one per 1 bit of the size), and the hashes of the leaves
-- not yet in the tree, at most max of them.
local function state(leaves, sizekey, prefix, block, max)
  local size = tonumber(redis.call('GET', sizekey) or '0')
  local count = redis.call('LLEN', leaves)
  local out = {size, count}
  local pos = 0
  for level = 52, 0, -1 do
    local span = 2 ^ level
    if math.floor(size / span) % 2 == 1 then
      out[#out + 1] = get_node(prefix, block, level, pos / span)
      pos = pos + span
    end
  end
  for i = size, math.min(count, size + max) - 1 do
    out[#out + 1] = get_node(prefix, block, 0, i)
  end
  return out
end
