-- unpush.lua: forget a device's push endpoint that its service said is gone, unless
-- the device registered another meanwhile.
-- KEYS[1] push endpoints  ARGV[1] device id  ARGV[2] the endpoint line that is gone
if redis.call("HGET", KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call("HDEL", KEYS[1], ARGV[1])
  return 1
end
return 0
