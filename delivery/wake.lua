-- wake.lua: which of a recipient's devices, just given a message, to wake: those with
-- a push endpoint, no open Receive stream, and no wake-up within the interval. Each
-- device chosen is marked woken for the interval in the same step, so however many
-- gateways admit messages for it, it gets one wake-up per interval. Live and woken
-- keys are built from the prefix: each is the recipient's, on this slot.
-- KEYS[1] push endpoints
-- ARGV[1] live key prefix (keys.Recipient.Live(""))  ARGV[2] woken key prefix
-- (keys.Recipient.Woken(""))  ARGV[3] interval (ms)  ARGV[4..] device ids
-- Reply: {device id, endpoint line, ...} for each device to wake
local out = {}
for i = 4, #ARGV do
  local dev = ARGV[i]
  local ep = redis.call("HGET", KEYS[1], dev)
  if ep and redis.call("EXISTS", ARGV[1] .. dev) == 0 and
      redis.call("SET", ARGV[2] .. dev, "1", "NX", "PX", ARGV[3]) then
    out[#out + 1] = dev
    out[#out + 1] = ep
  end
end
return out
