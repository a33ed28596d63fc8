-- save_claim: make this instance the one to save a room to the store, if
-- its first unsaved change is at least ARGV[2] ms old and no other
-- instance's claim holds it: its score moves ARGV[3] ms ahead, so another
-- saver takes it only once that claim lapsed (its instance crashed).
-- KEYS 1 the room's dirty index; ARGV 1 room 2 least age ms 3 lease ms
-- Returns the claim's time (unix ms, Redis' clock), or nil.
local s = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if not s then
  return false
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if s > now - tonumber(ARGV[2]) then
  return false
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return now
