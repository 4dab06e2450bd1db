-- undeliverable.lua: messages a device cannot be given, though queued for it: the
-- sealed body a message names is gone (its write failed on another cluster node) or
-- its record is unreadable. Each still queued moves q -> x on the device and is
-- reported expired, as fetch.lua does at expiry, so that one lost message never
-- holds up the rest of the mailbox; one that no device has queued any more is
-- settled (values.lua). Message keys are built from the prefix: each is
-- the recipient's, on this slot.
-- KEYS[1] mailbox  KEYS[2] outbox
-- ARGV[1] device  ARGV[2] now (ms)  ARGV[3] message key prefix  ARGV[4] receipt window (ms)
-- ARGV[5..] message ids
-- Reply: how many it expired.
local dev = ARGV[1]
local n = 0
for i = 5, #ARGV do
  local id = ARGV[i]
  local key = ARGV[3] .. id
  local m = read_message(key, dev)
  if m.s == STATE_QUEUED then
    expire_on_device(key, KEYS[1], KEYS[2], id, m.b or "", m.cm or "", dev, ARGV[2])
    settle(key, tonumber(ARGV[4]), KEYS[2], id, ARGV[2])
    n = n + 1
  end
end
return n
