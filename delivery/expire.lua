-- expire.lua: report a message expired on every device that has not received it, so
-- the business hears STATUS_EXPIRED even from a device that never comes back. Each
-- device's state moves q -> x once, as in fetch.lua and ack.lua, so whichever of them
-- runs first reports it; the message, queued nowhere then, is settled (values.lua).
-- Mailbox keys are built from the prefix and a device id: each
-- is the recipient's, on this slot.
-- KEYS[1] message  KEYS[2] outbox
-- ARGV[1] now (ms)  ARGV[2] mailbox key prefix (the device id follows)  ARGV[3] message id
-- ARGV[4] receipt window (ms)
-- Reply: how many devices it expired on (-1: not expired yet).
local now = tonumber(ARGV[1])
local x = redis.call("HGET", KEYS[1], MESSAGE_EXPIRES)
if not x then
  return 0
end
if tonumber(x) > now then
  return -1
end
local m = redis.call("HMGET", KEYS[1], MESSAGE_BUSINESS, MESSAGE_CLIENT_ID)
local n = 0
local h = redis.call("HGETALL", KEYS[1])
for i = 1, #h, 2 do
  local dev = state_field_device(h[i])
  if dev and h[i + 1] == STATE_QUEUED then
    expire_on_device(KEYS[1], ARGV[2] .. dev, KEYS[2], ARGV[3], m[1], m[2], dev, ARGV[1])
    n = n + 1
  end
end
settle(KEYS[1], tonumber(ARGV[4]), KEYS[2], ARGV[3], ARGV[1])
return n
