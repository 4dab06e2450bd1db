-- admit.lua: the whole admission decision for one message to one recipient, atomically
-- on the recipient's slot. Policy (DESIGN.md): a block beats everything; the
-- recipient's own consent beats what the business recorded; transactional is allowed
-- unless opted out; marketing needs an opt-in and fits the recipient's caps.
--
-- KEYS[1] devices  KEYS[2] pref (this business)  KEYS[3] business set
-- KEYS[4] idempotency  KEYS[5] message  KEYS[6] sequence  KEYS[7] outbox
-- KEYS[8] seen (this business)  KEYS[9] marketing log
-- KEYS[10..] the mailbox of each envelope's device, in envelope order
-- ARGV[1] mode: "admit", or "check" (LookupRecipient: decide, return devices, and write
--         only the seen mark)
-- ARGV[2] business  ARGV[3] category (t|m)  ARGV[4] kind  ARGV[5] client message id
-- ARGV[6] message id  ARGV[7] now (ms)  ARGV[8] expiry (ms)  ARGV[9] idempotency ttl (ms)
-- ARGV[10] notification channel
-- ARGV[11] new recipients: "1" this call may start one, "0" it may not, "-" no limit
-- ARGV[12] new-recipient window (ms)
-- ARGV[13] marketing cap per recipient (0: none)  ARGV[14] marketing window (ms)
-- ARGV[15] pair interval (ms, 0: none)  ARGV[16] pair burst
-- ARGV[17] body hash ("" when the envelopes carry whole messages)
-- ARGV[18..] device id, ciphertext, key id ("" to skip the check), for each envelope
--
-- Replies, {word, new, ...}, where new is 1 when the call started a new recipient
-- (the caller spends one of its business's new-recipient allowance):
-- {"accepted", new, id} {"duplicate", 0, id} {"stale", new, missing, unknown, retired}
-- {"blocked", new} {"opted_out", new} {"not_opted_in", new} {"unknown_recipient", new}
-- {"new_limited", 0} {"capped", new, retry ms}
-- and in check mode {"ok", new, {device id, record, ...}} when a message would pass.

local mode, biz, cat = ARGV[1], ARGV[2], ARGV[3]
local now = tonumber(ARGV[7])

if mode == "admit" then
  local first = redis.call("GET", KEYS[4])
  if first then
    return {"duplicate", 0, first}
  end
end

-- A person the business has not contacted within the window counts against its
-- new-recipient allowance, whatever the outcome: that is what stops a business from
-- probing numbers. Decided before anything about the person is revealed.
local new = 0
if ARGV[11] ~= "-" then
  local seen = redis.call("GET", KEYS[8])
  if not seen or now - tonumber(seen) >= tonumber(ARGV[12]) then
    if ARGV[11] ~= "1" then
      return {"new_limited", 0}
    end
    new = 1
    redis.call("SET", KEYS[8], ARGV[7], "PX", ARGV[12])
  end
end

if redis.call("EXISTS", KEYS[1]) == 0 then
  return {"unknown_recipient", new}
end

local p = redis.call("HMGET", KEYS[2], "blk", "u_" .. cat, "b_" .. cat, "tat")
if p[1] == "1" then
  return {"blocked", new}
end
local consent = p[2]
if not consent then
  consent = p[3]
end
if consent == "out" then
  return {"opted_out", new}
end
if cat == "m" and consent ~= "in" then
  return {"not_opted_in", new}
end

if mode == "check" then
  return {"ok", new, redis.call("HGETALL", KEYS[1])}
end

-- Envelopes must match the recipient's devices and their current keys exactly (the
-- Signal way): the sender learns which device keys to fetch or drop and sends again.
local first_env = 18
local n = (#ARGV - first_env + 1) / 3
local given = {}
for i = 1, n do
  given[ARGV[first_env + 3 * (i - 1)]] = true
end
local missing, unknown, retired, keyid = {}, {}, {}, {}
local recs = redis.call("HGETALL", KEYS[1])
for i = 1, #recs, 2 do
  local d = recs[i]
  -- A record is alg|public key|token hash|created|key id.
  keyid[d] = string.match(recs[i + 1], "^[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)$") or ""
  if not given[d] then
    missing[#missing + 1] = d
  end
end
for i = 1, n do
  local base = first_env + 3 * (i - 1)
  local d, k = ARGV[base], ARGV[base + 2]
  if not keyid[d] then
    unknown[#unknown + 1] = d
  elseif k ~= "" and keyid[d] ~= "" and k ~= keyid[d] then
    retired[#retired + 1] = d
  end
end
if #missing > 0 or #unknown > 0 or #retired > 0 then
  return {"stale", new, missing, unknown, retired}
end

-- The recipient's caps, which no business limit lifts. Pair rate: a GCRA per
-- business and recipient (tat = theoretical arrival time). Marketing: at most N per
-- rolling window across all businesses.
local interval, burst = tonumber(ARGV[15]), tonumber(ARGV[16])
local tat = nil
if interval > 0 then
  tat = math.max(tonumber(p[4]) or now, now)
  local tolerance = interval * (burst - 1)
  if tat - now > tolerance then
    return {"capped", new, tat - tolerance - now}
  end
end
local cap, window = tonumber(ARGV[13]), tonumber(ARGV[14])
if cat == "m" and cap > 0 then
  redis.call("ZREMRANGEBYSCORE", KEYS[9], "-inf", now - window)
  if redis.call("ZCARD", KEYS[9]) >= cap then
    local oldest = redis.call("ZRANGE", KEYS[9], 0, 0, "WITHSCORES")
    return {"capped", new, tonumber(oldest[2]) + window - now}
  end
end

local mid, expiry = ARGV[6], tonumber(ARGV[8])
local seq = redis.call("INCR", KEYS[6])
local fields = {"b", biz, "c", cat, "k", ARGV[4], "cm", ARGV[5], "t", ARGV[7], "x", ARGV[8], "bd", ARGV[17]}
for i = 1, n do
  local base = first_env + 3 * (i - 1)
  local d = ARGV[base]
  fields[#fields + 1] = "s:" .. d
  fields[#fields + 1] = "q"
  if ARGV[base + 2] ~= "" then
    fields[#fields + 1] = "kid:" .. d
    fields[#fields + 1] = ARGV[base + 2]
  end
end
redis.call("HSET", KEYS[5], unpack(fields))
-- The message outlives its expiry by a day so that a late Receive can still report it
-- expired and a late read receipt still finds it.
local keep = expiry + 86400000
redis.call("PEXPIREAT", KEYS[5], keep)
-- Each device's envelope is a string of its own beside the message (message key
-- .. ":" .. device), not a hash field: a large field would turn the whole hash into
-- a hashtable, costing more than the envelope's key does.
for i = 1, n do
  local base = first_env + 3 * (i - 1)
  redis.call("SET", KEYS[5] .. ":" .. ARGV[base], ARGV[base + 1])
  redis.call("PEXPIREAT", KEYS[5] .. ":" .. ARGV[base], keep)
end
for i = 1, n do
  local mb = KEYS[9 + i]
  redis.call("ZADD", mb, seq, mid)
  local ttl = redis.call("PTTL", mb)
  if ttl < 0 or now + ttl < keep then
    redis.call("PEXPIREAT", mb, keep)
  end
end

if tat then
  redis.call("HSET", KEYS[2], "tat", tat + interval)
end
if cat == "m" and cap > 0 then
  redis.call("ZADD", KEYS[9], now, mid)
  redis.call("PEXPIRE", KEYS[9], window)
end
redis.call("SET", KEYS[4], mid, "PX", ARGV[9])
redis.call("HSET", KEYS[2], "last", ARGV[7])
redis.call("SADD", KEYS[3], biz)
redis.call("RPUSH", KEYS[7], "A|" .. biz .. "|" .. mid .. "|" .. ARGV[5] .. "||" .. ARGV[7])
redis.call("PUBLISH", ARGV[10], "m")
return {"accepted", new, mid}
