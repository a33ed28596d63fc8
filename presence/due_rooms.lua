-- due_rooms: KEYS[1] = the due index; ARGV[1] = now (unix ms, "0" means
-- Redis server time), ARGV[2] = most rooms to return. Returns the time it
-- used, then the rooms with a due entry before it, for sweep. Go keeps
-- that time as its reading of the Redis clock (see RedisStore.now).
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local rooms = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', now), 'LIMIT', 0, tonumber(ARGV[2]))
table.insert(rooms, 1, string.format('%d', now))
return rooms
