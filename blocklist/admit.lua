-- admit.lua: the whole admission decision for one message to one recipient, atomically
-- on the recipient's slot. Policy (DESIGN.md): a block beats everything; the
-- recipient's own consent beats what the business recorded; transactional is allowed
-- unless opted out; marketing needs an opt-in.
--
-- KEYS[1] devices  KEYS[2] pref (this business)  KEYS[3] business set
-- KEYS[4] idempotency  KEYS[5] message  KEYS[6] sequence  KEYS[7] outbox
-- KEYS[8..] the mailbox of each envelope's device, in envelope order
-- ARGV[1] mode: "admit", or "check" (decide only, write nothing, return devices)
-- ARGV[2] business  ARGV[3] category (t|m)  ARGV[4] kind  ARGV[5] client message id
-- ARGV[6] message id  ARGV[7] now (ms)  ARGV[8] expiry (ms)  ARGV[9] idempotency ttl (ms)
-- ARGV[10] notification channel  ARGV[11..] device id, ciphertext, for each envelope
--
-- Replies: {"accepted", id} {"duplicate", id} {"stale", missing, unknown}
-- {"blocked"} {"opted_out"} {"not_opted_in"} {"unknown_recipient"}
-- and in check mode {"ok", {device id, record, ...}} when a message would pass policy.

local mode, biz, cat = ARGV[1], ARGV[2], ARGV[3]

if mode == "admit" then
  local first = redis.call("GET", KEYS[4])
  if first then
    return {"duplicate", first}
  end
end

if redis.call("EXISTS", KEYS[1]) == 0 then
  return {"unknown_recipient"}
end

local p = redis.call("HMGET", KEYS[2], "blk", "u_" .. cat, "b_" .. cat)
if p[1] == "1" then
  return {"blocked"}
end
local consent = p[2]
if not consent then
  consent = p[3]
end
if consent == "out" then
  return {"opted_out"}
end
if cat == "m" and consent ~= "in" then
  return {"not_opted_in"}
end

if mode == "check" then
  return {"ok", redis.call("HGETALL", KEYS[1])}
end

-- Envelopes must match the recipient's devices exactly (the Signal way): the sender
-- learns which device keys to fetch or drop and sends again.
local n = (#ARGV - 10) / 2
local given = {}
for i = 1, n do
  given[ARGV[9 + 2 * i]] = true
end
local missing, unknown, have = {}, {}, {}
for _, d in ipairs(redis.call("HKEYS", KEYS[1])) do
  have[d] = true
  if not given[d] then
    missing[#missing + 1] = d
  end
end
for i = 1, n do
  local d = ARGV[9 + 2 * i]
  if not have[d] then
    unknown[#unknown + 1] = d
  end
end
if #missing > 0 or #unknown > 0 then
  return {"stale", missing, unknown}
end

local mid, now, expiry = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local seq = redis.call("INCR", KEYS[6])
local fields = {"b", biz, "c", cat, "k", ARGV[4], "cm", ARGV[5], "t", ARGV[7], "x", ARGV[8]}
for i = 1, n do
  local d = ARGV[9 + 2 * i]
  fields[#fields + 1] = "e:" .. d
  fields[#fields + 1] = ARGV[10 + 2 * i]
  fields[#fields + 1] = "s:" .. d
  fields[#fields + 1] = "q"
end
redis.call("HSET", KEYS[5], unpack(fields))
-- The message outlives its expiry by a day so that a late Receive can still report it
-- expired and a late read receipt still finds it.
local keep = expiry + 86400000
redis.call("PEXPIREAT", KEYS[5], keep)
for i = 1, n do
  local mb = KEYS[7 + i]
  redis.call("ZADD", mb, seq, mid)
  local ttl = redis.call("PTTL", mb)
  if ttl < 0 or now + ttl < keep then
    redis.call("PEXPIREAT", mb, keep)
  end
end

redis.call("SET", KEYS[4], mid, "PX", ARGV[9])
redis.call("HSET", KEYS[2], "last", ARGV[7])
redis.call("SADD", KEYS[3], biz)
redis.call("RPUSH", KEYS[7], "A|" .. biz .. "|" .. mid .. "|" .. ARGV[5] .. "||" .. ARGV[7])
redis.call("PUBLISH", ARGV[10], "m")
return {"accepted", mid}
