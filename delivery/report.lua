-- report.lua: a device reports a message it received; each device reports a message
-- once.
-- KEYS[1] message  ARGV[1] device  ARGV[2] reason
-- Reply: the business id if this is a new report, "" if already reported,
-- false if the message is not one delivered to this device.
local m = redis.call("HMGET", KEYS[1], MESSAGE_BUSINESS, state_field(ARGV[1]))
if not m[1] or not m[2] then
  return false
end
if redis.call("HSETNX", KEYS[1], report_field(ARGV[1]), ARGV[2]) == 0 then
  return ""
end
return m[1]
