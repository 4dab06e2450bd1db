-- rate.lua: lease tokens from a business's global GCRA (generic cell rate algorithm)
-- bucket, or give unused ones back. TAT is the theoretical arrival time (ms).
-- A bucket of rate R and burst B holds max(0, now + B*T - TAT) / T tokens, T = 1000/R.
-- KEYS[1] the business's rate state
-- ARGV[1] now (ms)  ARGV[2] T (ms per token, float)  ARGV[3] burst B
-- ARGV[4] tokens wanted (> 0), or tokens returned (< 0)
-- ARGV[5] "need": a caller is waiting for exactly these; "stock": a prefetch
-- Reply: {granted, ms until the next token (0 while tokens are left)}
local now, T, B, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- State: "tat:T". When the limit changes, the tokens owed ((tat - now) / T) carry
-- over, rescaled to the new rate.
local state = redis.call("GET", KEYS[1]) or "0:1"
local sep = string.find(state, ":", 1, true)
local tat, oldT = tonumber(string.sub(state, 1, sep - 1)), tonumber(string.sub(state, sep + 1))
if tat < now then
  tat = now
elseif oldT ~= T then
  tat = now + (tat - now) * T / oldT
end
local ttl = math.ceil(B * T) + 1000
if want < 0 then
  -- Never fuller than a full bucket.
  tat = math.max(now, tat + want * T)
  redis.call("SET", KEYS[1], tostring(tat) .. ":" .. tostring(T), "PX", ttl)
  return {0, 0}
end
local avail = math.floor((now + B * T - tat) / T + 1e-9)
if avail <= 0 then
  return {0, math.ceil(tat + T - B * T - now)}
end
-- A prefetch shrinks as the bucket drains: at most half of what is left (at least
-- one), so that a few gateways never strand the whole bucket between them.
local grant = math.min(want, avail)
if ARGV[5] == "stock" then
  grant = math.min(grant, math.max(1, math.floor(avail / 2)))
end
tat = tat + grant * T
redis.call("SET", KEYS[1], tostring(tat) .. ":" .. tostring(T), "PX", ttl)
-- When that emptied the bucket, when the next token comes.
return {grant, math.max(0, math.ceil(tat + T - B * T - now))}
