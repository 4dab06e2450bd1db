-- approve.lua: an active device approves a pending device of the same person, bound
-- to the key the person compared: the pending device becomes active, and every
-- device is told.
-- KEYS[1] devices  KEYS[2] pending devices  KEYS[3] notices
-- ARGV[1] pending device id  ARGV[2] its key id, as compared  ARGV[3] approving device
-- ARGV[4] now (ms)  ARGV[5] devices allowed  ARGV[6] notification channel
-- Reply: "ok", "not_active" (the approver is not an active device), "no_such",
-- "key_mismatch" or "too_many"
if redis.call("HEXISTS", KEYS[1], ARGV[3]) == 0 then
  return "not_active"
end
local rec = redis.call("HGET", KEYS[2], ARGV[1])
if not rec then
  return "no_such"
end
if device_key_id(rec) ~= ARGV[2] then
  return "key_mismatch"
end
if redis.call("HLEN", KEYS[1]) >= tonumber(ARGV[5]) then
  return "too_many"
end
redis.call("HDEL", KEYS[2], ARGV[1])
redis.call("HSET", KEYS[1], ARGV[1], rec)
add_notice(KEYS[3], notice(NOTICE_APPROVED, ARGV[1], rec, ARGV[4], nil, ARGV[3]))
redis.call("PUBLISH", ARGV[6], "d")
return "ok"
