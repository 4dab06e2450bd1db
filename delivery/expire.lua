-- expire.lua: report a message expired on every device that has not received it, so
-- the business hears STATUS_EXPIRED even from a device that never comes back. Each
-- device's state moves q -> x once, as in fetch.lua and ack.lua, so whichever of them
-- runs first reports it.
-- KEYS[1] message  KEYS[2] outbox
-- ARGV[1] now (ms)  ARGV[2] mailbox key prefix (the device id follows)  ARGV[3] message id
-- Reply: how many devices it expired on (-1: not expired yet).
local now = tonumber(ARGV[1])
local x = redis.call("HGET", KEYS[1], "x")
if not x then
  return 0
end
if tonumber(x) > now then
  return -1
end
local m = redis.call("HMGET", KEYS[1], "b", "cm")
local n = 0
local h = redis.call("HGETALL", KEYS[1])
for i = 1, #h, 2 do
  local f, v = h[i], h[i + 1]
  if v == "q" and string.sub(f, 1, 2) == "s:" then
    local dev = string.sub(f, 3)
    redis.call("ZREM", ARGV[2] .. dev, ARGV[3])
    redis.call("DEL", KEYS[1] .. ":" .. dev)
    redis.call("HSET", KEYS[1], f, "x")
    redis.call("RPUSH", KEYS[2], "X|" .. m[1] .. "|" .. ARGV[3] .. "|" .. m[2] .. "|" .. dev .. "|" .. ARGV[1])
    n = n + 1
  end
end
return n
