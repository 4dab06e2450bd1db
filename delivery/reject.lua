-- reject.lua: a device refuses deliveries that failed verification or decryption. Each
-- queued one moves q -> f once: out of the mailbox, its envelope gone, and a FAILED
-- event with the reason in the outbox, in one step, so the business hears FAILED and
-- never DELIVERED from that device. A delivery already acknowledged (or expired) keeps
-- its state: what was reported stays true. A message that no device has queued any
-- more is settled (values.lua) in the same step.
-- Message keys are built from the prefix: each is the recipient's, on this slot.
-- KEYS[1] mailbox  KEYS[2] outbox
-- ARGV[1] device  ARGV[2] now (ms)  ARGV[3] message key prefix  ARGV[4] receipt window (ms)
-- ARGV[5..] message id, reason (keys.Reject*), for each refused delivery
-- Reply: {{ids that are not queued deliveries to this device}, {ids settled}}
local dev, now, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
local unknown, settled = {}, {}
for i = 5, #ARGV, 2 do
  local id, reason = ARGV[i], ARGV[i + 1]
  local key = ARGV[3] .. id
  local m = read_message(key, dev)
  if m.s == STATE_QUEUED and tonumber(m.x) <= now then
    expire_on_device(key, KEYS[1], KEYS[2], id, m.b, m.cm, dev, ARGV[2])
    unknown[#unknown + 1] = id
    if settle(key, window, KEYS[2], id, ARGV[2]) then
      settled[#settled + 1] = id
    end
  elseif m.s == STATE_QUEUED then
    redis.call("ZREM", KEYS[1], id)
    redis.call("DEL", envelope_key(key, dev))
    redis.call("HSET", key, state_field(dev), STATE_FAILED)
    redis.call("RPUSH", KEYS[2], event(STATUS_FAILED, m.b, id, m.cm, dev, ARGV[2], reason))
    if settle(key, window, KEYS[2], id, ARGV[2]) then
      settled[#settled + 1] = id
    end
  elseif m.s ~= STATE_FAILED then
    unknown[#unknown + 1] = id
  end
end
return {unknown, settled}
