-- The small script the baselines run: the least an admission must do, in one
-- EVALSHA on the recipient's slot. A block flag and a consent field are read, and the
-- envelope is appended to the recipient's stream, capped.
--
-- KEYS[1] blocks (hash: business -> 1), KEYS[2] consents (hash: business:category ->
-- in|out), KEYS[3] the recipient's stream.
-- ARGV[1] business, ARGV[2] consent field, ARGV[3] device id, ARGV[4] ciphertext.
-- Returns the stream entry id, or 0 when the message is refused.
if redis.call('HGET', KEYS[1], ARGV[1]) then
	return 0
end
if redis.call('HGET', KEYS[2], ARGV[2]) == 'out' then
	return 0
end
return redis.call('XADD', KEYS[3], 'MAXLEN', '~', 100, '*', 'd', ARGV[3], 'c', ARGV[4])
