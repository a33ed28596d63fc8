-- claim: takes the due events of one queue for the calling instance, when
-- it holds the queue's lease or nobody does. KEYS: due, events, order,
-- meta, lease. ARGV: now (unix ms, "0" means Redis server time), the
-- instance's owner id, lease ms, most events, debounce window ms.
-- Returns {now, events in the queue, owned (1/0), dropped since the last
-- claim, then key, record pairs, due order}. Each claimed event's due
-- moves to now + lease: an instance that dies holding it leaves it to the
-- next owner when the lease lapses. Its room marker is settled here: a
-- room.vacated may no longer be cancelled by a return, and a debounced
-- event's window starts.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local owner, lease, limit, window = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local pending = redis.call('HLEN', KEYS[2])
local held = redis.call('GET', KEYS[5])
if held and held ~= owner then
  return {wh_int(now), pending, 0, 0}
end
redis.call('SET', KEYS[5], owner, 'PX', lease)
local dropped = tonumber(redis.call('HGET', KEYS[4], 'dropped') or '0')
if dropped > 0 then
  redis.call('HINCRBY', KEYS[4], 'dropped', -dropped)
end
local out = {wh_int(now), pending, 1, dropped}
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', wh_int(now), 'LIMIT', 0, limit)
for _, k in ipairs(keys) do
  local rec = redis.call('HGET', KEYS[2], k)
  if not rec then
    redis.call('ZREM', KEYS[1], k)
    redis.call('ZREM', KEYS[3], k)
  else
    local f = wh_fields(rec)
    local marker = f[4]
    if marker ~= '' and redis.call('GET', marker) == 'p' .. k then
      if f[5] == 'room.vacated' then
        redis.call('DEL', marker)
      else
        -- The window's end, in this script's time; the key outlives it.
        redis.call('SET', marker, 's' .. wh_int(now + window), 'PX', window + 60000)
      end
    end
    redis.call('ZADD', KEYS[1], wh_int(now + lease), k)
    out[#out + 1] = k
    out[#out + 1] = rec
  end
end
return out
