-- values.lua: the Lua side of internal/keys/values.go, in front of every script of
-- blocklist and delivery (keys.Lua). A format changes here and in values.go together;
-- the keys tests run every script and parse what it wrote with the Go codecs.
--
-- Everything here is a plain local: the prelude runs on every call of every script,
-- and locals cost next to nothing there, where building tables of names and functions
-- cost about 3 µs of Redis CPU per call.

-- Status event letters (keys.Status*).
local STATUS_ACCEPTED, STATUS_DELIVERED, STATUS_READ, STATUS_EXPIRED, STATUS_FAILED = "A", "D", "R", "X", "F"
local STATUS_SETTLED = "S"

-- A message's state on one device (keys.State*).
local STATE_QUEUED, STATE_DELIVERED, STATE_READ, STATE_EXPIRED, STATE_FAILED = "q", "d", "r", "x", "f"

-- Message categories (keys.Category*).
local CATEGORY_TRANSACTIONAL, CATEGORY_MARKETING = "t", "m"

-- The message hash's own fields (keys.Message*).
local MESSAGE_BUSINESS, MESSAGE_CATEGORY, MESSAGE_KIND, MESSAGE_CLIENT_ID = "b", "c", "k", "cm"
local MESSAGE_SENT, MESSAGE_EXPIRES, MESSAGE_BODY, MESSAGE_SIGNING_KEY = "t", "x", "bd", "sk"
local MESSAGE_PENDING_BYTES = "pb"

-- Fields of the recipient's pref hash for one business, and consent values
-- (keys.Pref*, keys.Consent*).
local PREF_BLOCKED, PREF_PAIR_TAT, PREF_LAST = "blk", "tat", "last"
local CONSENT_IN, CONSENT_OUT = "in", "out"

-- The business record's count of the bytes its messages in flight hold
-- (keys.BusinessPending), its name and its signing-key fields (keys.BusinessName,
-- BusinessSigningKey and BusinessSigningKeyOf's "sigkey:<id>").
local BUSINESS_PENDING, BUSINESS_NAME, BUSINESS_SIGNING_KEY = "pend", "display_name", "sigkey"

-- Fields of a pending verification code (keys.Code*), and of a number's verification
-- counts (keys.Verify*).
local CODE_HASH, CODE_FAILURES = "h", "n"
local VERIFY_FAILURES, VERIFY_ISSUED = "f", "i"

-- count adds one to field of the counts hash key, which lives window ms from its
-- first count, and returns the count.
local function count(key, field, window)
  local n = redis.call("HINCRBY", key, field, 1)
  if redis.call("PTTL", key) < 0 then
    redis.call("PEXPIRE", key, window)
  end
  return n
end

-- event is a status event's outbox line (keys.Event): status|business|message id|
-- client message id|device id ("" for accepted and settled)|time (ms), then |reason
-- when reason is given (failed only), and |reason|bytes when bytes is given (the change
-- to the business's pending bytes: accepted and settled only).
local function event(status, biz, id, cm, dev, now, reason, bytes)
  local line = status .. "|" .. biz .. "|" .. id .. "|" .. cm .. "|" .. dev .. "|" .. now
  if bytes then
    line = line .. "|" .. (reason or "") .. "|" .. bytes
  elseif reason then
    line = line .. "|" .. reason
  end
  return line
end

-- device_key_id is the key id of a device record (keys.DeviceRecord):
-- algorithm|public key|token hash|created|key id. nil if the record is malformed.
local function device_key_id(record)
  return string.match(record, "^[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)$")
end

-- notice is a device notice's stream line (keys.Notice) about device dev, whose
-- device record is rec (nil for a removal): event|device|alg|public key|key id|time|
-- activate|by.
local function notice(ev, dev, rec, now, activate, by)
  local alg, pub, kid = "", "", ""
  if rec then
    alg, pub, kid = string.match(rec, "^([^|]*)|([^|]*)|[^|]*|[^|]*|([^|]*)$")
  end
  return ev .. "|" .. dev .. "|" .. alg .. "|" .. pub .. "|" .. kid .. "|" .. now .. "|" .. (activate or "") .. "|" .. (by or "")
end

-- device_created is the created time (ms) of a device record (keys.DeviceRecord).
local function device_created(rec)
  return tonumber(string.match(rec, "^[^|]*|[^|]*|[^|]*|([^|]*)|"))
end

-- device_token_hash is the token hash of a device record.
local function device_token_hash(rec)
  return string.match(rec, "^[^|]*|[^|]*|([^|]*)|")
end

-- Device notice events (keys.Notice*), and how long the notice stream is kept.
local NOTICE_PENDING, NOTICE_APPROVED, NOTICE_ACTIVATED, NOTICE_REMOVED, NOTICE_KEY_ROTATED = "p", "a", "v", "r", "k"
local NOTICE_FIELD, NOTICE_STREAM_LEN = "n", 100

-- add_notice appends a notice line to the recipient's notice stream.
local function add_notice(stream, line)
  redis.call("XADD", stream, "MAXLEN", "~", NOTICE_STREAM_LEN, "*", NOTICE_FIELD, line)
end

-- stream_id_less says whether stream id a (ms-seq) comes before b.
local function stream_id_less(a, b)
  local am, as = string.match(a, "^(%d+)-(%d+)$")
  local bm, bs = string.match(b, "^(%d+)-(%d+)$")
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end

-- A message's per-device fields (keys.MessageState, MessageKeyID, MessageReport).
local function state_field(dev)
  return "s:" .. dev
end
local function key_id_field(dev)
  return "kid:" .. dev
end
local function report_field(dev)
  return "rp:" .. dev
end

-- state_field_device is the device whose state field f is, or nil if f is not one.
local function state_field_device(f)
  if string.sub(f, 1, 2) == "s:" then
    return string.sub(f, 3)
  end
  return nil
end

-- envelope_key is device dev's envelope of the message whose hash is message_key: a
-- string of its own beside the hash, on the same slot (keys.Recipient.Envelope).
local function envelope_key(message_key, dev)
  return message_key .. ":" .. dev
end

-- message_fields are a new message's own fields and values, for HSET; the signing key
-- id only when the business gave one, the pending bytes only when counted (above 0).
local function message_fields(biz, cat, kind, cm, sent, expires, body, signing_key, pending)
  local f = {MESSAGE_BUSINESS, biz, MESSAGE_CATEGORY, cat, MESSAGE_KIND, kind, MESSAGE_CLIENT_ID, cm,
    MESSAGE_SENT, sent, MESSAGE_EXPIRES, expires, MESSAGE_BODY, body}
  if signing_key ~= "" then
    f[#f + 1] = MESSAGE_SIGNING_KEY
    f[#f + 1] = signing_key
  end
  if tonumber(pending) > 0 then
    f[#f + 1] = MESSAGE_PENDING_BYTES
    f[#f + 1] = pending
  end
  return f
end

-- read_message reads device dev's view of a message (HMGET keys.MessageFields(dev)):
-- a table by field (b, c, k, cm, t, x, bd, s, kid, rp, sk; false where absent) whose
-- list part is the values in that order, for a reply keys.ParseMessageFields reads.
local function read_message(message_key, dev)
  local v = redis.call("HMGET", message_key, MESSAGE_BUSINESS, MESSAGE_CATEGORY, MESSAGE_KIND,
    MESSAGE_CLIENT_ID, MESSAGE_SENT, MESSAGE_EXPIRES, MESSAGE_BODY, state_field(dev), key_id_field(dev),
    report_field(dev), MESSAGE_SIGNING_KEY)
  v.b, v.c, v.k, v.cm, v.t, v.x, v.bd, v.s, v.kid, v.rp = v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10]
  v.sk = v[11]
  return v
end

-- expire_on_device moves message id from queued to expired on device dev, for a
-- message of business biz with client message id cm: out of the device's mailbox, its
-- envelope gone, its state x, and the EXPIRED event in the outbox, in one step. The
-- caller has checked that the state is q.
local function expire_on_device(message_key, mailbox, outbox, id, biz, cm, dev, now)
  redis.call("ZREM", mailbox, id)
  redis.call("DEL", envelope_key(message_key, dev))
  redis.call("HSET", message_key, state_field(dev), STATE_EXPIRED)
  redis.call("RPUSH", outbox, event(STATUS_EXPIRED, biz, id, cm, dev, now))
end

-- settle ends a message's flight once no device has it queued (keys.Message,
-- Settled): a message some device received is cut to what a later read receipt or
-- report needs (business, client message id, each device's state and report) and
-- kept for the receipt window at most; a message no device received (expired or
-- refused everywhere) is deleted. A message that counted pending bytes queues a
-- settled event in the outbox, which takes them off its business's count. It returns
-- true when the message left flight with this call, false while a device still has it
-- queued or when it is gone already. Callers run it after moving a device's state off
-- queued, with the message's id and the time (ms).
local function settle(message_key, window, outbox, id, now)
  local h = redis.call("HGETALL", message_key)
  local drop, received, flying = {}, false, false
  local biz, cm, pending = "", "", 0
  for i = 1, #h, 2 do
    local f, v = h[i], h[i + 1]
    local prefix = string.sub(f, 1, 2)
    if prefix == "s:" then
      if v == STATE_QUEUED then
        return false
      end
      received = received or v == STATE_DELIVERED or v == STATE_READ
    elseif f == MESSAGE_BUSINESS then
      biz = v
    elseif f == MESSAGE_CLIENT_ID then
      cm = v
    elseif prefix ~= "rp" then
      flying = flying or f == MESSAGE_EXPIRES
      if f == MESSAGE_PENDING_BYTES then
        pending = tonumber(v)
      end
      drop[#drop + 1] = f
    end
  end
  if not flying then
    return false -- gone, or settled before
  end
  if pending > 0 then
    redis.call("RPUSH", outbox, event(STATUS_SETTLED, biz, id, cm, "", now, "", -pending))
  end
  if not received then
    redis.call("DEL", message_key)
    return true
  end
  redis.call("HDEL", message_key, unpack(drop))
  local ttl = redis.call("PTTL", message_key)
  if ttl < 0 or ttl > window then
    redis.call("PEXPIRE", message_key, window)
  end
  return true
end

-- The pref hash's consent fields for category cat: the recipient's own, and what the
-- business recorded.
local function pref_own(cat)
  return "u_" .. cat
end
local function pref_recorded(cat)
  return "b_" .. cat
end
