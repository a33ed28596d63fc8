-- Shared by the stream scripts (Go prepends wire's envelope.lua and this
-- file). A room's stream is a HASH meta {epoch, seq}, a STREAM of stored
-- frames with entry ids "<seq>-0", and a HASH state {seq, data}; all carry
-- the room's hash tag (rooms/wire).

-- MISSING is new_epoch's value with a store (write-behind): a room Redis
-- does not hold may be in the store, so no epoch is started; the script
-- ends with a MISSING error (before it wrote anything), and Go loads the
-- room back from the store (restore.lua) and runs it again.
local MISSING = '?'

local function missing()
  error({err = 'MISSING the room is not in redis'})
end

-- ensure_epoch returns the room's epoch and seq, starting epoch new_epoch
-- at seq 0 when the room has none (never used, expired, flushed): what is
-- left of an older history then goes with it. With new_epoch "" (a read
-- that must write nothing) a room without one answers "", 0.
local function ensure_epoch(meta, stream, state, new_epoch, ttl)
  local m = redis.call('HMGET', meta, 'epoch', 'seq')
  if m[1] then
    return m[1], tonumber(m[2]) or 0
  end
  if new_epoch == MISSING then
    missing()
  end
  if new_epoch == '' then
    return '', 0
  end
  redis.call('DEL', stream, state)
  redis.call('HSET', meta, 'epoch', new_epoch, 'seq', 0)
  redis.call('PEXPIRE', meta, ttl)
  return new_epoch, 0
end

-- mark_dirty notes, when on is "1" (a store is configured), that room has
-- a change the store does not have yet: its score in the dirty index is
-- the time of its first unsaved change (kept while one is there). The
-- keys that follow (the changed part: meta, stream and state, or doc and
-- doc_log) lose their TTL: until the room is saved Redis holds the only
-- copy of the change, and a hot-tier TTL passing before the saver got to
-- it (a backlog, the store down) would lose it. save_done.lua gives them
-- their TTL back.
local function mark_dirty(index, room, on, ...)
  if on ~= '1' then
    return
  end
  local t = redis.call('TIME')
  redis.call('ZADD', index, 'NX', t[1] * 1000 + math.floor(t[2] / 1000), room)
  for _, k in ipairs({...}) do
    redis.call('PERSIST', k)
  end
end
