-- fetch.lua: the next queued deliveries of one device after a mailbox position, and
-- the notices about the person's devices it has not acknowledged.
-- Expired ones are dropped here and reported (an EXPIRED event goes to the outbox),
-- in the same step, so a message is either delivered or reported expired, never both;
-- one that no device has queued any more is settled (values.lua).
-- Message keys are built from the prefix: each is the recipient's, on this slot.
-- KEYS[1] mailbox  KEYS[2] outbox  KEYS[3] the recipient's admission sequence
-- KEYS[4] devices  KEYS[5] notices  KEYS[6] notice cursors  KEYS[7] the device's live mark
-- ARGV[1] device  ARGV[2] min score ("-inf" or "(<seq>")  ARGV[3] now (ms)
-- ARGV[4] limit  ARGV[5] message key prefix  ARGV[6] receipt window (ms)
-- ARGV[7] the last notice this stream sent ("" for none)  ARGV[8] live mark lifetime
-- (ms; 0: none)
-- ARGV[9] envelope bytes: deliveries stop once they hold this many (at least one goes),
-- so that a stream whose client reads slowly holds little  ARGV[10] the stream's live
-- mark value
-- Reply: {last score seen, expired count, the admission sequence now (a stream that
-- saw a higher score knows Redis lost writes), 1 if the device is active (0: removed,
-- or pending), 1 if the page was cut (by the limit or the byte budget: there is more
-- right now) else 0, the mailbox's size after this fetch (for metrics), n, then n notices as id, line,
-- then per delivery: id, ciphertext, and the message as the device sees it (the values
-- of keys.MessageFields(device))}
local dev, now = ARGV[1], tonumber(ARGV[3])
local got = redis.call("ZRANGEBYSCORE", KEYS[1], ARGV[2], "+inf", "WITHSCORES", "LIMIT", 0, tonumber(ARGV[4]))
local out = {"", 0, redis.call("GET", KEYS[3]) or "0", redis.call("HEXISTS", KEYS[4], dev), 0, 0, 0}
if #got / 2 >= tonumber(ARGV[4]) then
  out[5] = 1
end
if out[4] == 0 then
  return out
end
-- An open stream needs no wake-up (wake.lua): say so for a while (0: no push
-- service reads it), with this stream's own value, which its end deletes.
if ARGV[8] ~= "0" then
  redis.call("SET", KEYS[7], ARGV[10], "PX", ARGV[8])
end
-- Notices after both the device's acknowledged cursor and what this stream sent.
local from = redis.call("HGET", KEYS[6], dev)
if ARGV[7] ~= "" and (not from or stream_id_less(from, ARGV[7])) then
  from = ARGV[7]
end
local start = "-"
if from then
  start = "(" .. from
end
for _, e in ipairs(redis.call("XRANGE", KEYS[5], start, "+", "COUNT", 64)) do
  out[#out + 1] = e[1]
  out[#out + 1] = e[2][2]
  out[7] = out[7] + 1
end
local expired, bytes, budget, sent = 0, 0, tonumber(ARGV[9]), 0
for i = 1, #got, 2 do
  local id = got[i]
  local key = ARGV[5] .. id
  local m = read_message(key, dev)
  if not m.b or m.s ~= STATE_QUEUED then
    redis.call("ZREM", KEYS[1], id)
  elseif tonumber(m.x) <= now then
    expire_on_device(key, KEYS[1], KEYS[2], id, m.b, m.cm, dev, ARGV[3])
    settle(key, tonumber(ARGV[6]), KEYS[2], id, ARGV[3])
    expired = expired + 1
  else
    local env = redis.call("GET", envelope_key(key, dev)) or ""
    if sent > 0 and bytes + #env > budget then
      out[5] = 1
      break -- the next fetch starts here
    end
    bytes, sent = bytes + #env, sent + 1
    out[#out + 1] = id
    out[#out + 1] = env
    for j = 1, #m do
      out[#out + 1] = m[j]
    end
  end
  out[1] = got[i + 1]
end
out[2] = expired
out[6] = redis.call("ZCARD", KEYS[1])
return out
