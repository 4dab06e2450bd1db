-- allowance.lua: lease units of a business's new-recipient allowance: at most `limit`
-- people newly contacted per rolling window, across all gateways. Each unit is a member
-- of a sorted set scored by when it was leased; it leaves the set when its window has
-- passed, or when the gateway hands it back unused (ZREM, package admission).
-- KEYS[1] the business's allowance set
-- ARGV[1] now (ms)  ARGV[2] window (ms)  ARGV[3] limit  ARGV[4] units wanted
-- ARGV[5] lease id (members are "<lease id>:<i>", keys.AllowanceUnit)
-- Reply: {granted, ms until the oldest unit leaves the window (when granted < wanted)}
local now, window, limit, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now - window)
local used = redis.call("ZCARD", KEYS[1])
local grant = math.max(0, math.min(limit - used, want))
for i = 1, grant do
  redis.call("ZADD", KEYS[1], now, ARGV[5] .. ":" .. i)
end
redis.call("PEXPIRE", KEYS[1], window)
local retry = 0
if grant < want then
  local oldest = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
  if oldest[2] then
    retry = tonumber(oldest[2]) + window - now
  else
    retry = window
  end
end
return {grant, retry}
