-- unindex.lua: take recipients out of one shard of the outbox index, each only if its
-- score is still the one the forwarder read before it drained the recipient's outbox:
-- a newer score means a script may have added events since.
-- KEYS[1] the index shard
-- ARGV[1..] recipient uid, score as read, for each drained recipient of the shard
-- Reply: how many it took out.
local n = 0
for i = 1, #ARGV, 2 do
  local s = redis.call("ZSCORE", KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[i + 1]) then
    redis.call("ZREM", KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
