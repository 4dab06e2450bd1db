-- rotate.lua: replace an active device's key, if it is still the key the caller
-- proved possession of, and tell every device.
-- KEYS[1] devices  KEYS[2] notices
-- ARGV[1] device id  ARGV[2] key id proved  ARGV[3] new device record  ARGV[4] now (ms)
-- ARGV[5] notification channel
-- Reply: "ok", "no_such" or "key_changed" (rotated meanwhile: prove the new key)
local rec = redis.call("HGET", KEYS[1], ARGV[1])
if not rec then
  return "no_such"
end
if device_key_id(rec) ~= ARGV[2] then
  return "key_changed"
end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[3])
add_notice(KEYS[2], notice(NOTICE_KEY_ROTATED, ARGV[1], ARGV[3], ARGV[4], nil, ""))
redis.call("PUBLISH", ARGV[5], "d")
return "ok"
