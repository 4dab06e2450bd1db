-- ack.lua: a device acknowledges deliveries as delivered or read. Each state change
-- (q -> d -> r) happens once, and its status event is queued in the outbox in the same
-- step, so a business is told of each change at least once and an ack can be retried.
-- KEYS[1] mailbox  KEYS[2] outbox
-- ARGV[1] device  ARGV[2] read (0|1)  ARGV[3] now (ms)  ARGV[4] message key prefix
-- ARGV[5..] message ids
-- Reply: {ids that are not deliveries to this device, or expired}
local dev, read, now = ARGV[1], ARGV[2] == "1", tonumber(ARGV[3])
local sf = "s:" .. dev
local unknown = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local key = ARGV[4] .. id
  local m = redis.call("HMGET", key, sf, "b", "cm", "x")
  local s = m[1]
  local tail = "|" .. tostring(m[2]) .. "|" .. id .. "|" .. tostring(m[3]) .. "|" .. dev .. "|" .. ARGV[3]
  if s == "q" and tonumber(m[4]) <= now then
    redis.call("ZREM", KEYS[1], id)
    redis.call("DEL", key .. ":" .. dev)
    redis.call("HSET", key, sf, "x")
    redis.call("RPUSH", KEYS[2], "X" .. tail)
    unknown[#unknown + 1] = id
  elseif s == "q" then
    redis.call("ZREM", KEYS[1], id)
    redis.call("DEL", key .. ":" .. dev)
    redis.call("RPUSH", KEYS[2], "D" .. tail)
    if read then
      redis.call("HSET", key, sf, "r")
      redis.call("RPUSH", KEYS[2], "R" .. tail)
    else
      redis.call("HSET", key, sf, "d")
    end
  elseif s == "d" then
    if read then
      redis.call("HSET", key, sf, "r")
      redis.call("RPUSH", KEYS[2], "R" .. tail)
    end
  elseif s ~= "r" then
    unknown[#unknown + 1] = id
  end
end
return unknown
