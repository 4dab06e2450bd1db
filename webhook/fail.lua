-- fail.lua: a delivery failed: count it, say when to try again, and give up once the
-- failures in a row have lasted the retry window, if this gateway still holds the
-- lease.
-- KEYS[1] webhook  KEYS[2] lease
-- ARGV[1] gateway id  ARGV[2] now (ms)  ARGV[3] next attempt (ms)  ARGV[4] the error
-- ARGV[5] retry window (ms)
-- Reply: 1 when delivery was given up with this failure, 0 otherwise.
if redis.call("GET", KEYS[2]) ~= ARGV[1] or redis.call("EXISTS", KEYS[1]) == 0 then
  return 0
end
redis.call("HINCRBY", KEYS[1], "tries", 1)
local since = tonumber(redis.call("HGET", KEYS[1], "fail"))
if not since then
  since = tonumber(ARGV[2])
  redis.call("HSET", KEYS[1], "fail", ARGV[2])
end
redis.call("HSET", KEYS[1], "next", ARGV[3], "err", ARGV[4])
if tonumber(ARGV[2]) - since >= tonumber(ARGV[5]) then
  redis.call("HSET", KEYS[1], "gave", ARGV[2])
  return 1
end
return 0
