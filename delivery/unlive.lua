-- unlive.lua: a Receive stream ends: its device's live mark goes, unless another
-- stream of the device set it since (a reconnect overlapping the old stream), whose
-- mark must stay while it is open.
-- KEYS[1] the live mark  ARGV[1] the ending stream's value
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
end
return 0
