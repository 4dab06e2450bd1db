-- advance.lua: an event was delivered: the webhook's cursor moves to it (never back)
-- and the failures in a row are forgotten, if this gateway still holds the lease,
-- which it renews: a batch of slow deliveries must not outlast it, or another gateway
-- would start sending the same events beside this one.
-- KEYS[1] webhook  KEYS[2] lease  ARGV[1] gateway id  ARGV[2] the event's stream id
-- ARGV[3] lease time (ms)
-- Reply: 1 when the cursor moved, 0 when the lease is lost or the cursor was past it.
if redis.call("GET", KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call("PEXPIRE", KEYS[2], ARGV[3])
local cur = redis.call("HGET", KEYS[1], "cur")
if not cur or not stream_id_less(cur, ARGV[2]) then
  return 0
end
redis.call("HSET", KEYS[1], "cur", ARGV[2])
redis.call("HDEL", KEYS[1], "fail", "tries", "next", "err")
redis.call("HINCRBY", KEYS[1], "ok", 1)
return 1
