-- record.lua: a business's record of a consent it collected, atomically on the
-- recipient's slot: policy.lua's new-recipient question first (a record for a person
-- new to the business spends its new-recipient allowance, as a lookup does), then the
-- record in the pref hash, its evidence on the business side of the consent log, and
-- what governs now. The person's own side of the log is not touched, so no business
-- can push the person's entries out of it.
--
-- A number with no device keeps what businesses record for it only for a while: keys
-- this call creates (or that a call before it created) expire after the given time
-- unless the number registers first (register.lua keeps them then), so records for
-- numbers nobody registered cannot pile up. Keys that exist without an expiry (a
-- number that had devices) are left as they are.
--
-- KEYS[1] devices  KEYS[2] pending devices  KEYS[3] pref (this business)
-- KEYS[4] business set  KEYS[5] business side of the consent log  KEYS[6] seen (this business)
-- ARGV[1] now (ms)  ARGV[2] new recipients: "1" this call may start one, "0" it may not,
-- "-" no limit  ARGV[3] new-recipient window (ms)  ARGV[4] category (t|m)
-- ARGV[5] business  ARGV[6] log length (approximate)  ARGV[7] how long records for a number
-- without devices are kept (ms)  ARGV[8] n, then n pref field/value pairs
-- (keys.RecordedConsent), then the log entry's field/value pairs (keys.ConsentChange)
-- Reply: {"new_limited", 0}, or {"ok", new, blocked ("1" if so), the person's own consent or ""}
local refusal, new = start_new(KEYS[6], ARGV[1], ARGV[2], ARGV[3])
if refusal then
  return {refusal, 0}
end
local registered = redis.call("EXISTS", KEYS[1]) == 1 or redis.call("EXISTS", KEYS[2]) == 1
local expiring = {}
if not registered then
  for i = 3, 5 do
    if redis.call("PTTL", KEYS[i]) ~= -1 then -- absent (-2), or expiring already
      expiring[#expiring + 1] = KEYS[i]
    end
  end
end
local n = tonumber(ARGV[8])
local fields, entry = {}, {}
for i = 9, 8 + 2 * n do
  fields[#fields + 1] = ARGV[i]
end
for i = 9 + 2 * n, #ARGV do
  entry[#entry + 1] = ARGV[i]
end
redis.call("HSET", KEYS[3], unpack(fields))
redis.call("SADD", KEYS[4], ARGV[5])
redis.call("XADD", KEYS[5], "MAXLEN", "~", ARGV[6], "*", unpack(entry))
for _, k in ipairs(expiring) do
  redis.call("PEXPIRE", k, ARGV[7])
end
local st = redis.call("HMGET", KEYS[3], PREF_BLOCKED, pref_own(ARGV[4]))
return {"ok", new, st[1] or "", st[2] or ""}
