-- noticeack.lua: a device acknowledges notices: its cursor moves to the latest of
-- those that exist, never back, so that a late or repeated ack changes nothing and an
-- id from the future cannot hide notices still to come.
-- KEYS[1] notice cursors  KEYS[2] notices  ARGV[1] device id  ARGV[2..] notice ids
local cur = redis.call("HGET", KEYS[1], ARGV[1])
local best = cur
for i = 2, #ARGV do
  local id = ARGV[i]
  if string.match(id, "^%d+%-%d+$") and (not best or stream_id_less(best, id)) and
      #redis.call("XRANGE", KEYS[2], id, id) > 0 then
    best = id
  end
end
if best and best ~= cur then
  redis.call("HSET", KEYS[1], ARGV[1], best)
end
return best or ""
