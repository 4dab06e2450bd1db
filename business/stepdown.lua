-- Steps a business's limits down one tier if its quality figure is above the
-- threshold, at most once per window. The check, the new limits and the record of
-- the step happen together, so no lock is needed and none can be left behind.
--
-- KEYS[1] the quality hash (hr:{b:B}:q), KEYS[2] the business's record (hr:{b:B}):
-- one business, one slot.
-- ARGV[1] the newest counter bucket that has left the window, ARGV[2] now (ms),
-- ARGV[3] the window (ms), ARGV[4] the threshold, ARGV[5] the fewest deliveries the
-- figure is judged on, ARGV[6..8] mps, burst and uniq as the caller read them,
-- ARGV[9..11] the stepped-down mps, burst and uniq.
--
-- Returns 1 if it stepped down; 0 if the window already had its step, the figure is
-- not above the threshold (the rule of Store.Quality), or the limits are no longer
-- what the caller read (the operator's newer limits stand).
local now = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[1], 'stepped'))
if last and now - last < tonumber(ARGV[3]) then
  return 0
end

local oldest = tonumber(ARGV[1])
local delivered, reports = 0, 0
local counters = redis.call('HGETALL', KEYS[1])
for i = 1, #counters, 2 do
  local kind, bucket = string.match(counters[i], '^([dr]):(%d+)$')
  if kind and tonumber(bucket) > oldest then
    local n = tonumber(counters[i + 1])
    if kind == 'd' then delivered = delivered + n else reports = reports + n end
  end
end
if delivered == 0 or delivered < tonumber(ARGV[5]) or reports / delivered <= tonumber(ARGV[4]) then
  return 0
end

local cur = redis.call('HMGET', KEYS[2], 'mps', 'burst', 'uniq')
for i = 1, 3 do
  if (cur[i] or '') ~= ARGV[5 + i] then
    return 0
  end
end
redis.call('HSET', KEYS[2], 'mps', ARGV[9], 'burst', ARGV[10], 'uniq', ARGV[11])
redis.call('HSET', KEYS[1], 'stepped', ARGV[2])
return 1
