-- Webhook queue library (WebhookLua), prepended to every script that queues webhook
-- events (rooms/webhook notify.lua and the presence scripts). A queue is
-- four keys (wire.WebhookQueue), passed as a table q:
--   q[1] due     ZSET key -> unix ms the event is due; while an instance
--                delivers it, when its claim lapses
--   q[2] events  HASH key -> record (see below)
--   q[3] order   ZSET key, every score 0: keys oldest first
--   q[4] meta    HASH next (the last key's number), dropped (events the
--                bound dropped, not yet counted by an instance)
-- A key is the queue's event number in 16 digits, so keys sort in the
-- order their events were queued, and due's ties go out in that order.
-- A record is "attempts\ncreated\ntargets\nmarker\ntype\nroom\nbody":
-- failed attempts, unix ms of the event, the indexes of the URLs still to
-- deliver to ("" all), the room key that points at the event while it
-- waits (room.vacated's, or a debounce's; "" none), the event type, the
-- room and the JSON body sent.

local function wh_int(n)
  return string.format('%d', n)
end

local function wh_body(typ, now, data)
  return '{"type":"' .. typ .. '","timestamp":' .. wh_int(now) .. ',"data":' .. data .. '}'
end

local function wh_record(attempts, created, targets, marker, typ, room, body)
  return attempts .. '\n' .. created .. '\n' .. targets .. '\n' .. marker .. '\n' .. typ .. '\n' .. room .. '\n' .. body
end

-- wh_fields splits a record into its seven fields.
local function wh_fields(rec)
  local f, from = {}, 1
  for _ = 1, 6 do
    local nl = string.find(rec, '\n', from, true)
    f[#f + 1] = string.sub(rec, from, nl - 1)
    from = nl + 1
  end
  f[7] = string.sub(rec, from)
  return f
end

-- wh_add queues an event of room due at unix ms due and returns its key.
-- max > 0 bounds the queue: past it, the oldest event is dropped and
-- counted in meta's dropped.
local function wh_add(q, now, due, room, typ, marker, data, max)
  local k = string.format('%016d', redis.call('HINCRBY', q[4], 'next', 1))
  redis.call('HSET', q[2], k, wh_record('0', wh_int(now), '', marker, typ, room, wh_body(typ, now, data)))
  redis.call('ZADD', q[1], wh_int(due), k)
  redis.call('ZADD', q[3], 0, k)
  if max > 0 and redis.call('ZCARD', q[3]) > max then
    local old = redis.call('ZPOPMIN', q[3])
    redis.call('ZREM', q[1], old[1])
    redis.call('HDEL', q[2], old[1])
    redis.call('HINCRBY', q[4], 'dropped', 1)
  end
  return k
end

-- wh_cancel removes the event the marker key points at ("p" then its key)
-- when it is still waiting, and the marker; true when one was removed. A
-- claimed event's marker is gone already (claim.lua).
local function wh_cancel(q, marker)
  local v = redis.call('GET', marker)
  if not v then
    return false
  end
  redis.call('DEL', marker)
  local k = string.sub(v, 2)
  if string.sub(v, 1, 1) == 'p' and redis.call('ZREM', q[1], k) == 1 then
    redis.call('ZREM', q[3], k)
    redis.call('HDEL', q[2], k)
    return true
  end
  return false
end
