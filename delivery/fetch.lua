-- fetch.lua: the next queued deliveries of one device after a mailbox position.
-- Expired ones are dropped here and reported (an EXPIRED event goes to the outbox),
-- in the same step, so a message is either delivered or reported expired, never both.
-- KEYS[1] mailbox  KEYS[2] outbox
-- ARGV[1] device  ARGV[2] min score ("-inf" or "(<seq>")  ARGV[3] now (ms)
-- ARGV[4] limit  ARGV[5] message key prefix
-- Reply: {last score seen, expired count, then per delivery: id, b, c, k, cm, t, x,
-- ciphertext, body hash, key id}
local dev, now = ARGV[1], tonumber(ARGV[3])
local got = redis.call("ZRANGEBYSCORE", KEYS[1], ARGV[2], "+inf", "WITHSCORES", "LIMIT", 0, tonumber(ARGV[4]))
local out = {"", 0}
local expired = 0
for i = 1, #got, 2 do
  local id = got[i]
  out[1] = got[i + 1]
  local key = ARGV[5] .. id
  local m = redis.call("HMGET", key, "b", "c", "k", "cm", "t", "x", "s:" .. dev, "bd", "kid:" .. dev)
  if not m[1] or m[7] ~= "q" then
    redis.call("ZREM", KEYS[1], id)
  elseif tonumber(m[6]) <= now then
    redis.call("ZREM", KEYS[1], id)
    redis.call("DEL", key .. ":" .. dev)
    redis.call("HSET", key, "s:" .. dev, "x")
    redis.call("RPUSH", KEYS[2], "X|" .. m[1] .. "|" .. id .. "|" .. m[4] .. "|" .. dev .. "|" .. ARGV[3])
    expired = expired + 1
  else
    local envelope = redis.call("GET", key .. ":" .. dev) or ""
    for _, v in ipairs({id, m[1], m[2], m[3], m[4], m[5], m[6], envelope, m[8] or "", m[9] or ""}) do
      out[#out + 1] = v
    end
  end
end
out[2] = expired
return out
