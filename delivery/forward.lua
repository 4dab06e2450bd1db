-- forward.lua: copy status events to one business's stream, each once. An event is
-- copied again when two gateways flush the same outbox at once, or when a gateway died
-- between copying events and removing them from the outbox; a mark per event on the
-- business's slot, kept for the dedupe window, makes the copy idempotent. The
-- delivered counter of the quality figure moves with the copy, so it counts each
-- delivery once too. Dedupe keys are built from the prefix: each is the business's,
-- on this slot.
-- The business's pending bytes (the bytes its messages in flight hold) move with the
-- copy too, once per event: up by an ACCEPTED event's, down by a settled event's, which
-- goes to no stream.
-- KEYS[1] the business's status stream  KEYS[2] its quality hash  KEYS[3] its record
-- ARGV[1] stream max length (approximate)  ARGV[2] dedupe window (ms)
-- ARGV[3] dedupe key prefix  ARGV[4] notification channel
-- ARGV[5..] per event: event id (a hash of its outbox line), quality field to count it
-- under ("" for none), the change to the pending bytes, n, then its n stream field
-- names and values (none: it goes to no stream)
-- Reply: how many events were new and copied.
local copied, streamed = 0, 0
local i = 5
while i <= #ARGV do
  local id, quality, bytes, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local values = {}
  for j = 1, n do
    values[j] = ARGV[i + 3 + j]
  end
  i = i + 4 + n
  if redis.call("SET", ARGV[3] .. id, "1", "NX", "PX", ARGV[2]) then
    if n > 0 then
      redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[1], "*", unpack(values))
      streamed = streamed + 1
    end
    if quality ~= "" then
      redis.call("HINCRBY", KEYS[2], quality, 1)
    end
    if bytes ~= 0 then
      redis.call("HINCRBY", KEYS[3], BUSINESS_PENDING, bytes)
    end
    copied = copied + 1
  end
end
if streamed > 0 then
  redis.call("PUBLISH", ARGV[4], "s")
end
return copied
