-- forward.lua: copy status events to one business's stream, each once. An event is
-- copied again when two gateways flush the same outbox at once, or when a gateway died
-- between copying events and removing them from the outbox; a mark per event on the
-- business's slot, kept for the dedupe window, makes the copy idempotent. The
-- delivered counter of the quality figure moves with the copy, so it counts each
-- delivery once too. Dedupe keys are built from the prefix: each is the business's,
-- on this slot.
-- KEYS[1] the business's status stream  KEYS[2] its quality hash
-- ARGV[1] stream max length (approximate)  ARGV[2] dedupe window (ms)
-- ARGV[3] dedupe key prefix  ARGV[4] notification channel
-- ARGV[5..] per event: event id (a hash of its outbox line), quality field to count it
-- under ("" for none), n, then its n stream field names and values
-- Reply: how many events were new and copied.
local copied = 0
local i = 5
while i <= #ARGV do
  local id, quality, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local values = {}
  for j = 1, n do
    values[j] = ARGV[i + 2 + j]
  end
  i = i + 3 + n
  if redis.call("SET", ARGV[3] .. id, "1", "NX", "PX", ARGV[2]) then
    redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[1], "*", unpack(values))
    if quality ~= "" then
      redis.call("HINCRBY", KEYS[2], quality, 1)
    end
    copied = copied + 1
  end
end
if copied > 0 then
  redis.call("PUBLISH", ARGV[4], "s")
end
return copied
