-- register.lua: spend a verification code and add a device, atomically, so a code
-- registers at most one device and wrong guesses are counted.
-- KEYS[1] code  KEYS[2] devices
-- ARGV[1] sha256 of the code offered  ARGV[2] device id  ARGV[3] device record
-- ARGV[4] tries allowed  ARGV[5] devices allowed
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
if redis.call("HLEN", KEYS[2]) >= tonumber(ARGV[5]) then
  return "too_many"
end
redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[2], ARGV[2], ARGV[3])
return "ok"
