-- register.lua: spend a verification code and add a device, atomically, so a code
-- registers at most one device and wrong guesses are counted. The first device of a
-- number is active at once; a number that has devices gets the new one as pending
-- (it receives nothing and is not listed to businesses), and every device is told.
-- Wrong codes are counted per number, across every code issued in the window, so a
-- new code does not give a guesser new tries: past the limit, no code is taken until
-- the window ends. The number's first device keeps what businesses recorded for it
-- before it had one (record.lua lets that expire otherwise); the prefix builds the
-- pref keys of the businesses the business set names, on this slot.
-- KEYS[1] code  KEYS[2] devices  KEYS[3] pending devices  KEYS[4] notices
-- KEYS[5] verification counts  KEYS[6] business set  KEYS[7] business side of the consent log
-- ARGV[1] sha256 of the code offered  ARGV[2] device id  ARGV[3] device record
-- ARGV[4] tries allowed  ARGV[5] devices allowed  ARGV[6] now (ms)
-- ARGV[7] when a pending device activates unrefused (ms)  ARGV[8] notification channel
-- ARGV[9] verification window (ms)  ARGV[10] pref key prefix (a business id follows)
-- Reply: {word, ms}: "ok" (active), "pending", "no_code", "bad_code" (ms: wrong codes
-- the number may still offer in the window), "locked" (ms: until the window ends) or
-- "too_many"
local tries = tonumber(ARGV[4])
local failures = tonumber(redis.call("HGET", KEYS[5], VERIFY_FAILURES) or "0")
if failures >= tries then
  return {"locked", math.max(redis.call("PTTL", KEYS[5]), 1)}
end
local h = redis.call("HGET", KEYS[1], CODE_HASH)
if not h then
  return {"no_code", 0}
end
if h ~= ARGV[1] then
  if redis.call("HINCRBY", KEYS[1], CODE_FAILURES, 1) >= tries then
    redis.call("DEL", KEYS[1])
  end
  return {"bad_code", tries - count(KEYS[5], VERIFY_FAILURES, ARGV[9])}
end
local active = redis.call("HLEN", KEYS[2])
if active + redis.call("HLEN", KEYS[3]) >= tonumber(ARGV[5]) then
  return {"too_many", 0}
end
redis.call("DEL", KEYS[1])
if active == 0 then
  for _, b in ipairs(redis.call("SMEMBERS", KEYS[6])) do
    redis.call("PERSIST", ARGV[10] .. b)
  end
  redis.call("PERSIST", KEYS[6])
  redis.call("PERSIST", KEYS[7])
  redis.call("HSET", KEYS[2], ARGV[2], ARGV[3])
  return {"ok", 0}
end
redis.call("HSET", KEYS[3], ARGV[2], ARGV[3])
add_notice(KEYS[4], notice(NOTICE_PENDING, ARGV[2], ARGV[3], ARGV[6], ARGV[7], ""))
redis.call("PUBLISH", ARGV[8], "d")
return {"pending", 0}
