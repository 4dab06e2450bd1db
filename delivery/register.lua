-- register.lua: spend a verification code and add a device, atomically, so a code
-- registers at most one device and wrong guesses are counted. The first device of a
-- number is active at once; a number that has devices gets the new one as pending
-- (it receives nothing and is not listed to businesses), and every device is told.
-- KEYS[1] code  KEYS[2] devices  KEYS[3] pending devices  KEYS[4] notices
-- ARGV[1] sha256 of the code offered  ARGV[2] device id  ARGV[3] device record
-- ARGV[4] tries allowed  ARGV[5] devices allowed  ARGV[6] now (ms)
-- ARGV[7] when a pending device activates unrefused (ms)  ARGV[8] notification channel
-- Reply: "ok" (active), "pending", "no_code", "bad_code" or "too_many"
local h = redis.call("HGET", KEYS[1], CODE_HASH)
if not h then
  return "no_code"
end
if h ~= ARGV[1] then
  if redis.call("HINCRBY", KEYS[1], CODE_FAILURES, 1) >= tonumber(ARGV[4]) then
    redis.call("DEL", KEYS[1])
  end
  return "bad_code"
end
local active = redis.call("HLEN", KEYS[2])
if active + redis.call("HLEN", KEYS[3]) >= tonumber(ARGV[5]) then
  return "too_many"
end
redis.call("DEL", KEYS[1])
if active == 0 then
  redis.call("HSET", KEYS[2], ARGV[2], ARGV[3])
  return "ok"
end
redis.call("HSET", KEYS[3], ARGV[2], ARGV[3])
add_notice(KEYS[4], notice(NOTICE_PENDING, ARGV[2], ARGV[3], ARGV[6], ARGV[7], ""))
redis.call("PUBLISH", ARGV[8], "d")
return "pending"
