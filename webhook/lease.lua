-- lease.lua: take or renew the lease on delivering one business's webhook.
-- KEYS[1] lease  ARGV[1] gateway id  ARGV[2] lease time (ms)
-- Reply: 1 when this gateway holds the lease now, 0 when another does.
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return 1
end
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
  return 1
end
return 0
