-- activate.lua: a pending device whose waiting period ended unrefused becomes active,
-- and every device is told. Run when the pending device asks to receive.
-- KEYS[1] devices  KEYS[2] pending devices  KEYS[3] notices
-- ARGV[1] device id  ARGV[2] now (ms)  ARGV[3] waiting period (ms)
-- ARGV[4] devices allowed  ARGV[5] notification channel
-- Reply: {"ok"}, {"active"} (it already was), {"gone"} (removed meanwhile),
-- {"wait", activate ms} or {"too_many"}
if redis.call("HEXISTS", KEYS[1], ARGV[1]) == 1 then
  return {"active"}
end
local rec = redis.call("HGET", KEYS[2], ARGV[1])
if not rec then
  return {"gone"}
end
local at = device_created(rec) + tonumber(ARGV[3])
if at > tonumber(ARGV[2]) then
  return {"wait", at}
end
if redis.call("HLEN", KEYS[1]) >= tonumber(ARGV[4]) then
  return {"too_many"}
end
redis.call("HDEL", KEYS[2], ARGV[1])
redis.call("HSET", KEYS[1], ARGV[1], rec)
add_notice(KEYS[3], notice(NOTICE_ACTIVATED, ARGV[1], rec, ARGV[2], nil, ""))
redis.call("PUBLISH", ARGV[5], "d")
return {"ok"}
