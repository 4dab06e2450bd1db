-- body.lua: store a sealed message body once, however many messages share it, for as
-- long as the longest-lived of them needs it.
-- KEYS[1] the body (named by its hash)  ARGV[1] body  ARGV[2] keep until (ms)  ARGV[3] now (ms)
if redis.call("SET", KEYS[1], ARGV[1], "NX") then
  redis.call("PEXPIREAT", KEYS[1], ARGV[2])
  return 1
end
local ttl = redis.call("PTTL", KEYS[1])
if ttl >= 0 and tonumber(ARGV[3]) + ttl < tonumber(ARGV[2]) then
  redis.call("PEXPIREAT", KEYS[1], ARGV[2])
end
return 0
