-- policy.lua: the admission policy as one function, which admit.lua and check.lua both
-- run, so a Send and a LookupRecipient can never decide differently. DESIGN.md: a
-- block beats everything; the recipient's own consent beats what the business
-- recorded; transactional is allowed unless opted out; marketing needs an opt-in.
--
-- decide(devices, pref, seen, cat, now, allowance, window), on the recipient's keys:
--   devices, pref, seen  the device hash, the pref hash and the seen mark of this business
--   cat        category (t|m)
--   now        now (ms), as the caller passed it
--   allowance  new recipients: "1" this call may start one, "0" it may not, "-" no limit
--   window     the new-recipient window (ms)
-- Returns refusal, new, pref, devices: refusal is nil when the policy allows the
-- message, or the reply word (new_limited, unknown_recipient, blocked, opted_out,
-- not_opted_in); new is 1 when the call started a new recipient (the caller spends one
-- of its business's new-recipient allowance); pref is {blocked, own consent, recorded
-- consent, pair tat, last message} as read, and devices the device hash as HGETALL
-- reads it (device id, record, ...), read once for the caller too.
--
-- start_new(seen, now, allowance, window) is decide's first question alone, for the
-- calls that ask about a number without sending to it (record.lua): it returns
-- "new_limited" when the person is new to the business and the call may not start
-- one, else nil and new.
local function start_new(seen, now, allowance, window)
  -- A person the business has not contacted within the window counts against its
  -- new-recipient allowance, whatever the outcome: that is what stops a business from
  -- probing numbers. Decided before anything about the person is revealed.
  if allowance == "-" then
    return nil, 0
  end
  local last = redis.call("GET", seen)
  if last and tonumber(now) - tonumber(last) < tonumber(window) then
    return nil, 0
  end
  if allowance ~= "1" then
    return "new_limited", 0
  end
  redis.call("SET", seen, now, "PX", window)
  return nil, 1
end

local function decide(devices, pref, seen, cat, now, allowance, window)
  local refusal, new = start_new(seen, now, allowance, window)
  if refusal then
    return refusal, 0
  end

  local recs = redis.call("HGETALL", devices)
  if #recs == 0 then
    return "unknown_recipient", new
  end

  local p = redis.call("HMGET", pref, PREF_BLOCKED, pref_own(cat), pref_recorded(cat),
    PREF_PAIR_TAT, PREF_LAST)
  if p[1] == "1" then
    return "blocked", new
  end
  local consent = p[2]
  if not consent then
    consent = p[3]
  end
  if consent == CONSENT_OUT then
    return "opted_out", new
  end
  if cat == CATEGORY_MARKETING and consent ~= CONSENT_IN then
    return "not_opted_in", new
  end
  return nil, new, p, recs
end
