-- Shared by the stream scripts (Go prepends wire's envelope.lua and this
-- file). A room's stream is a HASH meta {epoch, seq}, a STREAM of stored
-- frames with entry ids "<seq>-0", and a HASH state {seq, data}; all carry
-- the room's hash tag (rooms/wire).

-- ensure_epoch returns the room's epoch and seq, starting epoch new_epoch
-- at seq 0 when the room has none (never used, expired, flushed): what is
-- left of an older history then goes with it. With new_epoch "" (a read
-- that must write nothing) a room without one answers "", 0.
local function ensure_epoch(meta, stream, state, new_epoch, ttl)
  local m = redis.call('HMGET', meta, 'epoch', 'seq')
  if m[1] then
    return m[1], tonumber(m[2]) or 0
  end
  if new_epoch == '' then
    return '', 0
  end
  redis.call('DEL', stream, state)
  redis.call('HSET', meta, 'epoch', new_epoch, 'seq', 0)
  redis.call('PEXPIRE', meta, ttl)
  return new_epoch, 0
end
