-- remove.lua: remove one of a person's devices, active or pending, at the request of
-- an active device of the same person: its record goes (so its token stops working),
-- every delivery still queued for it is reported expired, its mailbox goes, and every
-- device is told, in one step. Message keys are built from the prefix: each is the
-- recipient's, on this slot.
-- KEYS[1] devices  KEYS[2] pending devices  KEYS[3] notices  KEYS[4] notice cursors
-- KEYS[5] the removed device's mailbox  KEYS[6] outbox  KEYS[7] push endpoints
-- ARGV[1] device to remove  ARGV[2] removing device  ARGV[3] now (ms)
-- ARGV[4] message key prefix  ARGV[5] receipt window (ms)  ARGV[6] notification channel
-- Reply: {"ok", token hash of the removed device, ids settled...}, {"not_active"} or
-- {"no_such"}
local dev, by = ARGV[1], ARGV[2]
if redis.call("HEXISTS", KEYS[1], by) == 0 then
  return {"not_active"}
end
local rec = redis.call("HGET", KEYS[1], dev)
local from = KEYS[1]
if not rec then
  rec, from = redis.call("HGET", KEYS[2], dev), KEYS[2]
end
if not rec then
  return {"no_such"}
end
local out = {"ok", device_token_hash(rec) or ""} -- "": a malformed record, whose token no cache holds
for _, id in ipairs(redis.call("ZRANGE", KEYS[5], 0, -1)) do
  local key = ARGV[4] .. id
  local m = read_message(key, dev)
  if m.s == STATE_QUEUED then
    expire_on_device(key, KEYS[5], KEYS[6], id, m.b, m.cm, dev, ARGV[3])
    if settle(key, tonumber(ARGV[5]), KEYS[6], id, ARGV[3]) then
      out[#out + 1] = id
    end
  end
end
redis.call("DEL", KEYS[5])
redis.call("HDEL", from, dev)
redis.call("HDEL", KEYS[4], dev)
redis.call("HDEL", KEYS[7], dev)
if by == dev then
  by = ""
end
add_notice(KEYS[3], notice(NOTICE_REMOVED, dev, nil, ARGV[3], nil, by))
redis.call("PUBLISH", ARGV[6], "d")
return out
