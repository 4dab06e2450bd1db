-- issue.lua: issue a verification code for a number, unless the number has had as
-- many codes as the window allows: a new code replaces the one before it, and is
-- counted, in one step.
-- KEYS[1] code  KEYS[2] verification counts
-- ARGV[1] codes allowed per window  ARGV[2] verification window (ms)
-- ARGV[3] when the code expires (ms)  ARGV[4..] the code's fields (keys.Code)
-- Reply: {"ok", 0} or {"too_many", ms until the window ends}
if tonumber(redis.call("HGET", KEYS[2], VERIFY_ISSUED) or "0") >= tonumber(ARGV[1]) then
  return {"too_many", math.max(redis.call("PTTL", KEYS[2]), 1)}
end
count(KEYS[2], VERIFY_ISSUED, ARGV[2])
redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[1], unpack(ARGV, 4))
redis.call("PEXPIREAT", KEYS[1], ARGV[3])
return {"ok", 0}
