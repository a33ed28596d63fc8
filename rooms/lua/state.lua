-- state: the room's position and its state, read in one step.
-- KEYS 1 meta 2 stream 3 state; ARGV 1 new epoch 2 history ttl ms
-- Returns {epoch, seq} or {epoch, seq, state seq, state data}.
local epoch, seq = ensure_epoch(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
local s = redis.call('HMGET', KEYS[3], 'seq', 'data')
if s[1] and s[2] then
  return {epoch, string.format('%d', seq), s[1], s[2]}
end
return {epoch, string.format('%d', seq)}
