-- lease.lua: one business's global token bucket. A gateway leases tokens from it for
-- its local stock (and for callers waiting now), and gives back tokens it did not
-- spend. Both keys carry the business's hash tag, so the script touches one slot.
-- Times are microseconds since the Unix epoch, passed by the gateway: the script never
-- reads a clock, so it runs the same on Redis and on the in-process store.
--
-- KEYS[1]  hr:{b:B}:gcra     hash: tokens (what the bucket held at ts), ts
-- KEYS[2]  hr:{b:B}:leasers  zset: gateway id -> when it last leased
-- ARGV[1]  now
-- ARGV[2]  rate, tokens per second (> 0)
-- ARGV[3]  burst (>= 1)
-- ARGV[4]  need: tokens callers are waiting for; granted first, as far as the bucket goes
-- ARGV[5]  stock: tokens wanted for the gateway's local stock
-- ARGV[6]  held: tokens the gateway holds already
-- ARGV[7]  give: unspent tokens given back; credited before anything is granted
-- ARGV[8]  gateway id, or "" when the call only gives back
-- ARGV[9]  the least number of gateways to assume (WithReplicasHint)
-- ARGV[10] refill quantum, microseconds
-- ARGV[11] active since: gateways that leased at or before it no longer count
-- ARGV[12] how long to keep the leasers set, ms
-- Reply: {granted, microseconds until the bucket holds a quantum again (0 if it does),
--         gateways counted}

local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local need = tonumber(ARGV[4])
local stock = tonumber(ARGV[5])
local held = tonumber(ARGV[6])
local give = tonumber(ARGV[7])
local gateway = ARGV[8]

-- Refill since ts. ts never moves back: a gateway whose clock runs behind gets no refill
-- until the others' time has passed, so skew between gateways is paid for once, not on
-- every call. ts is kept as the string the gateway sent, so no precision is lost.
local tokens, ts, tsText = burst, now, ARGV[1]
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
if state[1] and state[2] then
  tokens, ts, tsText = tonumber(state[1]), tonumber(state[2]), state[2]
  if now > ts then
    tokens = tokens + (now - ts) * rate / 1e6
    ts, tsText = now, ARGV[1]
  end
end
tokens = math.min(burst, tokens + give)

-- Who is leasing: every gateway that leased within the lease lifetime may hold tokens.
local gateways = tonumber(ARGV[9])
if gateway ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[1], gateway)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[11])
  redis.call('PEXPIRE', KEYS[2], ARGV[12])
  gateways = math.max(gateways, redis.call('ZCARD', KEYS[2]))
end

-- A gateway holds at most cap tokens; half the burst is shared among the gateways.
local cap = math.max(1, math.floor(burst / (2 * gateways)))
-- Nothing is granted while the bucket holds less than a quantum, so that a saturated
-- business costs a gateway one call per quantum, not one per token.
local quantum = math.max(1, math.min(cap, math.floor(rate * tonumber(ARGV[10]) / 1e6)))

local granted = 0
local avail = math.floor(tokens + 1e-6)
if avail >= quantum then
  local forNeed = math.min(need, avail)
  local left = avail - forNeed
  -- The stock is what was asked, up to the gateway's cap, and no more than its share of
  -- what is left (but a quantum, if there is one): leases shrink as the bucket drains.
  local forStock = math.min(stock, cap - held, math.max(quantum, math.floor(left / gateways)), left)
  granted = forNeed + math.max(0, forStock)
  tokens = tokens - granted
end

local wait = 0
if tokens + 1e-6 < quantum then
  wait = math.ceil((quantum - tokens) * 1e6 / rate + math.max(0, ts - now))
end

redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', tsText)
-- Once full, the bucket is the same as no key; a week bounds the wait of tiny rates.
redis.call('PEXPIRE', KEYS[1], math.min(604800000, math.ceil((burst - tokens) * 1000 / rate) + 1000))
return {granted, wait, gateways}
