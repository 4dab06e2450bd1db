-- values.lua: the Lua side of internal/keys/values.go, in front of every script of
-- blocklist and delivery (keys.Lua). A format changes here and in values.go together;
-- the keys tests run every script and parse what it wrote with the Go codecs.
local values = {}

-- Status event letters (keys.Status*).
values.status = {accepted = "A", delivered = "D", read = "R", expired = "X"}

-- A message's state on one device (keys.State*).
values.state = {queued = "q", delivered = "d", read = "r", expired = "x"}

-- Message categories (keys.Category*).
values.category = {transactional = "t", marketing = "m"}

-- event is a status event's outbox line (keys.Event): status|business|message id|
-- client message id|device id ("" for accepted)|time (ms).
function values.event(status, biz, id, cm, dev, now)
  return status .. "|" .. biz .. "|" .. id .. "|" .. cm .. "|" .. dev .. "|" .. now
end

-- device_key_id is the key id of a device record (keys.DeviceRecord):
-- algorithm|public key|token hash|created|key id. nil if the record is malformed.
function values.device_key_id(record)
  return string.match(record, "^[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)$")
end

-- The message hash's own fields (keys.Message*).
values.message = {business = "b", category = "c", kind = "k", client_id = "cm", sent = "t", expires = "x",
  body = "bd"}

-- Its per-device fields (keys.MessageState, MessageKeyID, MessageReport).
function values.state_field(dev)
  return "s:" .. dev
end
function values.key_id_field(dev)
  return "kid:" .. dev
end
function values.report_field(dev)
  return "rp:" .. dev
end

-- state_field_device is the device whose state field f is, or nil if f is not one.
function values.state_field_device(f)
  if string.sub(f, 1, 2) == "s:" then
    return string.sub(f, 3)
  end
  return nil
end

-- envelope_key is device dev's envelope of the message whose hash is message_key: a
-- string of its own beside the hash, on the same slot (keys.Recipient.Envelope).
function values.envelope_key(message_key, dev)
  return message_key .. ":" .. dev
end

-- message_fields are a new message's own fields and values, for HSET.
function values.message_fields(biz, cat, kind, cm, sent, expires, body)
  local f = values.message
  return {f.business, biz, f.category, cat, f.kind, kind, f.client_id, cm, f.sent, sent, f.expires, expires,
    f.body, body}
end

-- read_message reads device dev's view of a message (HMGET keys.MessageFields(dev)):
-- a table by field (b, c, k, cm, t, x, bd, s, kid, rp; false where absent) whose
-- list part is the values in that order, for a reply keys.ParseMessageFields reads.
function values.read_message(message_key, dev)
  local f = values.message
  local v = redis.call("HMGET", message_key, f.business, f.category, f.kind, f.client_id, f.sent, f.expires,
    f.body, values.state_field(dev), values.key_id_field(dev), values.report_field(dev))
  v.b, v.c, v.k, v.cm, v.t, v.x, v.bd, v.s, v.kid, v.rp = v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10]
  return v
end

-- expire_on_device moves message id from queued to expired on device dev, for a
-- message of business biz with client message id cm: out of the device's mailbox, its
-- envelope gone, its state x, and the EXPIRED event in the outbox, in one step. The
-- caller has checked that the state is q.
function values.expire_on_device(message_key, mailbox, outbox, id, biz, cm, dev, now)
  redis.call("ZREM", mailbox, id)
  redis.call("DEL", values.envelope_key(message_key, dev))
  redis.call("HSET", message_key, values.state_field(dev), values.state.expired)
  redis.call("RPUSH", outbox, values.event(values.status.expired, biz, id, cm, dev, now))
end

-- Fields of the recipient's pref hash for one business, and consent values
-- (keys.Pref*, keys.Consent*).
values.PREF_BLOCKED, values.PREF_PAIR_TAT, values.PREF_LAST = "blk", "tat", "last"
values.CONSENT_IN, values.CONSENT_OUT = "in", "out"
function values.pref_own(cat)
  return "u_" .. cat
end
function values.pref_recorded(cat)
  return "b_" .. cat
end

-- Fields of a pending verification code (keys.Code*).
values.code = {hash = "h", failures = "n"}
