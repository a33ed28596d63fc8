-- due_rooms: KEYS[1] = the due index; ARGV[1] = now (unix ms, "0" means
-- Redis server time), ARGV[2] = most rooms to return. Lists rooms with a
-- conn expiry or grace end before now, for sweep.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', now), 'LIMIT', 0, tonumber(ARGV[2]))
