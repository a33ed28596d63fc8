-- save_state: keep data as the room's state at seq unless a later state
-- is held, seq is ahead of the room, or the state is of another epoch.
-- KEYS 1 meta 2 state 3 state_req 4 state_claim 5 the room's dirty index
--      6 stream
-- ARGV 1 seq 2 data 3 history ttl ms 4 epoch of the sender's position
--      5 room 6 mark dirty "1"/"0"
-- Returns "ok" or "stale".
local seq = tonumber(ARGV[1])
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
local top = tonumber(m[2])
if not top or m[1] ~= ARGV[4] or seq > top then
  return 'stale'
end
local cur = tonumber(redis.call('HGET', KEYS[2], 'seq'))
if cur and seq < cur then
  return 'stale'
end
redis.call('HSET', KEYS[2], 'seq', ARGV[1], 'data', ARGV[2])
-- A state arrived: whoever was asked last may be asked again.
redis.call('HDEL', KEYS[2], 'asked')
redis.call('PEXPIRE', KEYS[2], ARGV[3])
mark_dirty(KEYS[5], ARGV[5], ARGV[6], KEYS[1], KEYS[6], KEYS[2])
-- An answered request: the next one goes out as soon as it is due, not a
-- retry period later.
local req = tonumber(redis.call('GET', KEYS[3]))
if req and seq >= req then
  redis.call('DEL', KEYS[3], KEYS[4])
end
return 'ok'
