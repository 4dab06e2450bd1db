-- signingkeys.lua: write a business's signing keys if they are still as read. The
-- business record is also where the forwarder counts the bytes of the business's
-- messages in flight, many times a second for a busy sender; a WATCH of the record
-- would fail on every count, so only the fields a change of keys read are compared:
-- the name (the business exists) and the signing-key fields, as "field=value\n" lines
-- in byte order (signingFingerprint in signingkeys.go).
-- KEYS[1] the business record
-- ARGV[1] those lines as read  ARGV[2] n, then n field/value pairs to set, then the
-- fields to delete
-- Reply: 1 when written, 0 when the keys changed meanwhile (read again and retry).
local h = redis.call("HGETALL", KEYS[1])
local seen = {}
for i = 1, #h, 2 do
  local f = h[i]
  if f == BUSINESS_NAME or f == BUSINESS_SIGNING_KEY or
      string.sub(f, 1, #BUSINESS_SIGNING_KEY + 1) == BUSINESS_SIGNING_KEY .. ":" then
    seen[#seen + 1] = f .. "=" .. h[i + 1] .. "\n"
  end
end
table.sort(seen)
if table.concat(seen) ~= ARGV[1] then
  return 0
end
local n = tonumber(ARGV[2])
if n > 0 then
  local set = {}
  for i = 3, 2 + 2 * n do
    set[#set + 1] = ARGV[i]
  end
  redis.call("HSET", KEYS[1], unpack(set))
end
if #ARGV > 2 + 2 * n then
  local del = {}
  for i = 3 + 2 * n, #ARGV do
    del[#del + 1] = ARGV[i]
  end
  redis.call("HDEL", KEYS[1], unpack(del))
end
return 1
