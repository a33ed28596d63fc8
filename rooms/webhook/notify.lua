-- notify: queues a webhook event that Go decides (room.state,
-- doc.updated, room.deleted). KEYS: the room's queue (due, events, order,
-- meta), then the room's debounce marker. ARGV: now (unix ms, "0" means
-- Redis server time), room, room as JSON, type, data JSON, debounce
-- window ms ("0": none, the event is queued as is), queue bound.
--
-- Debounced events go out at most once per window per room, the last
-- change never lost: while the room's event waits, a change replaces its
-- body (the newest data, the newest time); once an instance claims it,
-- claim.lua sets the marker to "s<end of the window, unix ms>", and a
-- change then is queued due at the window's end.
local q = {KEYS[1], KEYS[2], KEYS[3], KEYS[4]}
local marker = KEYS[5]
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local room, roomJSON, typ, data = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local window, max = tonumber(ARGV[6]), tonumber(ARGV[7])
data = '{"room":' .. roomJSON .. data
if window <= 0 then
  wh_add(q, now, now, room, typ, '', data, max)
  return 1
end
local v = redis.call('GET', marker)
if v and string.sub(v, 1, 1) == 'p' then
  local k = string.sub(v, 2)
  local rec = redis.call('HGET', q[2], k)
  if rec then
    local f = wh_fields(rec)
    redis.call('HSET', q[2], k, wh_record(f[1], f[2], f[3], f[4], f[5], f[6], wh_body(typ, now, data)))
    return 0
  end
end
local due = now
if v and string.sub(v, 1, 1) == 's' then
  due = math.max(now, tonumber(string.sub(v, 2)) or 0)
end
local k = wh_add(q, now, due, room, typ, marker, data, max)
-- The marker outlives any wait (a safety net for a queue Redis lost).
redis.call('SET', marker, 'p' .. k, 'PX', 86400000)
return 1
