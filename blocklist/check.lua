-- check.lua: LookupRecipient's question, "would a message of this category from this
-- business pass the recipient's policy?", answered by policy.lua's decide, as
-- admit.lua answers it. It writes nothing but the seen mark: a lookup counts against
-- the business's new-recipient allowance like a message.
--
-- KEYS[1] devices  KEYS[2] pref (this business)  KEYS[3] seen (this business)
-- ARGV[1] category (t|m)  ARGV[2] now (ms)
-- ARGV[3] new recipients: "1" this call may start one, "0" it may not, "-" no limit
-- ARGV[4] new-recipient window (ms)
--
-- Replies, {word, new, ...}, new as in admit.lua: {"ok", new, {device id, record, ...}}
-- when a message would pass, else admit.lua's refusal {word, new}.
local refusal, new, _, devices = decide(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if refusal then
  return {refusal, new}
end
return {"ok", new, devices}
