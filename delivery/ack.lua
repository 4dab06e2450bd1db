-- ack.lua: a device acknowledges deliveries as delivered or read. Each state change
-- (q -> d -> r) happens once, and its status event is queued in the outbox in the same
-- step, so a business is told of each change at least once and an ack can be retried.
-- A message that no device has queued any more is settled (values.lua) in the same
-- step. Message keys are built from the prefix: each is the recipient's, on this slot.
-- KEYS[1] mailbox  KEYS[2] outbox
-- ARGV[1] device  ARGV[2] read (0|1)  ARGV[3] now (ms)  ARGV[4] message key prefix
-- ARGV[5] receipt window (ms)  ARGV[6..] message ids
-- Reply: {{ids that are not deliveries to this device, or expired}, {ids settled}}
local dev, read, now, window = ARGV[1], ARGV[2] == "1", tonumber(ARGV[3]), tonumber(ARGV[5])
local sf = state_field(dev)
local unknown, settled = {}, {}
for i = 6, #ARGV do
  local id = ARGV[i]
  local key = ARGV[4] .. id
  local m = read_message(key, dev)
  local s = m.s
  if s == STATE_QUEUED and tonumber(m.x) <= now then
    expire_on_device(key, KEYS[1], KEYS[2], id, m.b, m.cm, dev, ARGV[3])
    unknown[#unknown + 1] = id
    if settle(key, window, KEYS[2], id, ARGV[3]) then
      settled[#settled + 1] = id
    end
  elseif s == STATE_QUEUED then
    redis.call("ZREM", KEYS[1], id)
    redis.call("DEL", envelope_key(key, dev))
    redis.call("RPUSH", KEYS[2], event(STATUS_DELIVERED, m.b, id, m.cm, dev, ARGV[3]))
    if read then
      redis.call("HSET", key, sf, STATE_READ)
      redis.call("RPUSH", KEYS[2], event(STATUS_READ, m.b, id, m.cm, dev, ARGV[3]))
    else
      redis.call("HSET", key, sf, STATE_DELIVERED)
    end
    if settle(key, window, KEYS[2], id, ARGV[3]) then
      settled[#settled + 1] = id
    end
  elseif s == STATE_DELIVERED then
    if read then
      redis.call("HSET", key, sf, STATE_READ)
      redis.call("RPUSH", KEYS[2], event(STATUS_READ, m.b, id, m.cm, dev, ARGV[3]))
    end
  elseif s ~= STATE_READ then
    unknown[#unknown + 1] = id
  end
end
return {unknown, settled}
