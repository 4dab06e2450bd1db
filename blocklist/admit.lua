-- admit.lua: the whole admission decision for one message to one recipient, atomically
-- on the recipient's slot: policy.lua's decide, then the envelopes against the
-- recipient's devices, then the recipient's caps, then the append to every device
-- mailbox.
--
-- KEYS[1] devices  KEYS[2] pref (this business)  KEYS[3] business set
-- KEYS[4] idempotency  KEYS[5] message  KEYS[6] sequence  KEYS[7] outbox
-- KEYS[8] seen (this business)  KEYS[9] marketing log
-- KEYS[10..] the mailbox of each envelope's device, in envelope order
-- ARGV[1] business  ARGV[2] category (t|m)  ARGV[3] kind  ARGV[4] client message id
-- ARGV[5] message id  ARGV[6] now (ms)  ARGV[7] expiry (ms)  ARGV[8] idempotency ttl (ms)
-- ARGV[9] notification channel
-- ARGV[10] new recipients: "1" this call may start one, "0" it may not, "-" no limit
-- ARGV[11] new-recipient window (ms)
-- ARGV[12] marketing cap per recipient (0: none)  ARGV[13] marketing window (ms)
-- ARGV[14] pair interval (ms, 0: none)  ARGV[15] pair burst
-- ARGV[16] body hash ("" when the envelopes carry whole messages)
-- ARGV[17] the business signing key id the message was signed with ("" if not said)
-- ARGV[18] what the message counts against its business's pending bytes (0: nothing):
-- kept in the message, and carried by its ACCEPTED event to the business's count; -1:
-- the business's quota has no room for it, so it is refused unless it is a duplicate
-- ARGV[19..] device id, ciphertext, key id ("" to skip the check), for each envelope
--
-- Replies, {word, new, ...}, where new is 1 when the call started a new recipient
-- (the caller spends one of its business's new-recipient allowance):
-- {"accepted", new, id} {"duplicate", 0, id, expiry ms ("" if the message is gone)}
-- {"stale", new, missing, unknown, retired}
-- {"blocked", new} {"opted_out", new} {"not_opted_in", new} {"unknown_recipient", new}
-- {"new_limited", 0} {"capped", new, retry ms} {"quota_exceeded", 0}

local biz, cat = ARGV[1], ARGV[2]
local now = tonumber(ARGV[6])

local first = redis.call("GET", KEYS[4])
if first then
  -- The first message's key is this one's with the first id: KEYS[5] is the message
  -- key prefix followed by ARGV[5], so the name keeps the recipient's hash tag.
  local key = string.sub(KEYS[5], 1, #KEYS[5] - #ARGV[5]) .. first
  return {"duplicate", 0, first, redis.call("HGET", key, MESSAGE_EXPIRES) or ""}
end

if tonumber(ARGV[18]) < 0 then
  return {"quota_exceeded", 0}
end

local refusal, new, p, recs = decide(KEYS[1], KEYS[2], KEYS[8], cat, ARGV[6], ARGV[10], ARGV[11])
if refusal then
  return {refusal, new}
end

-- Envelopes must match the recipient's devices and their current keys exactly (the
-- Signal way): the sender learns which device keys to fetch or drop and sends again.
local first_env = 19
local n = (#ARGV - first_env + 1) / 3
local given = {}
for i = 1, n do
  given[ARGV[first_env + 3 * (i - 1)]] = true
end
local missing, unknown, retired, keyid = {}, {}, {}, {}
for i = 1, #recs, 2 do
  local d = recs[i]
  keyid[d] = device_key_id(recs[i + 1]) or ""
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
local interval, burst = tonumber(ARGV[14]), tonumber(ARGV[15])
local tat = nil
if interval > 0 then
  tat = math.max(tonumber(p[4]) or now, now)
  local tolerance = interval * (burst - 1)
  if tat - now > tolerance then
    return {"capped", new, tat - tolerance - now}
  end
end
local cap, window = tonumber(ARGV[12]), tonumber(ARGV[13])
if cat == CATEGORY_MARKETING and cap > 0 then
  redis.call("ZREMRANGEBYSCORE", KEYS[9], "-inf", now - window)
  if redis.call("ZCARD", KEYS[9]) >= cap then
    local oldest = redis.call("ZRANGE", KEYS[9], 0, 0, "WITHSCORES")
    return {"capped", new, tonumber(oldest[2]) + window - now}
  end
end

local mid, expiry = ARGV[5], tonumber(ARGV[7])
local seq = redis.call("INCR", KEYS[6])
local fields = message_fields(biz, cat, ARGV[3], ARGV[4], ARGV[6], ARGV[7], ARGV[16], ARGV[17], ARGV[18])
for i = 1, n do
  local base = first_env + 3 * (i - 1)
  local d = ARGV[base]
  fields[#fields + 1] = state_field(d)
  fields[#fields + 1] = STATE_QUEUED
  if ARGV[base + 2] ~= "" then
    fields[#fields + 1] = key_id_field(d)
    fields[#fields + 1] = ARGV[base + 2]
  end
end
redis.call("HSET", KEYS[5], unpack(fields))
-- The message outlives its expiry by a day so that a late Receive can still report it
-- expired and a late read receipt still finds it.
local keep = expiry + 86400000
redis.call("PEXPIREAT", KEYS[5], keep)
-- Each device's envelope is a string of its own beside the message, not a hash field:
-- a large field would turn the whole hash into a hashtable, costing more than the
-- envelope's key does. Its key is built here from the message's (same slot).
for i = 1, n do
  local base = first_env + 3 * (i - 1)
  redis.call("SET", envelope_key(KEYS[5], ARGV[base]), ARGV[base + 1], "PXAT", keep)
end
-- A mailbox lives as long as its longest-lived message: its expiry is set when it has
-- none (NX) and otherwise only ever moved later (GT).
for i = 1, n do
  local mb = KEYS[9 + i]
  redis.call("ZADD", mb, seq, mid)
  if redis.call("PEXPIREAT", mb, keep, "NX") == 0 then
    redis.call("PEXPIREAT", mb, keep, "GT")
  end
end

if cat == CATEGORY_MARKETING and cap > 0 then
  redis.call("ZADD", KEYS[9], now, mid)
  redis.call("PEXPIRE", KEYS[9], window)
end
redis.call("SET", KEYS[4], mid, "PX", ARGV[8])
-- The pref hash's last message time, and the pair rate's next arrival time, in one
-- write; the business joins the recipient's set of businesses with its first message
-- only (a pref hash with a last time is one whose business is in the set).
if tat then
  redis.call("HSET", KEYS[2], PREF_LAST, ARGV[6], PREF_PAIR_TAT, tat + interval)
else
  redis.call("HSET", KEYS[2], PREF_LAST, ARGV[6])
end
if not p[5] then
  redis.call("SADD", KEYS[3], biz)
end
local pending = nil
if tonumber(ARGV[18]) > 0 then
  pending = ARGV[18]
end
redis.call("RPUSH", KEYS[7], event(STATUS_ACCEPTED, biz, mid, ARGV[4], "", ARGV[6], nil, pending))
redis.call("PUBLISH", ARGV[9], "m")
return {"accepted", new, mid}
