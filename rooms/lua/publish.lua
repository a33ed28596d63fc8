-- publish: store (unless ARGV[5] is "0") and publish one message frame.
-- KEYS 1 meta  2 stream  3 state  4 state_req  5 the publish key's key
--      (KEYS[1] again when the publish has no key)  6 the room's dirty index
-- ARGV 1 new epoch (MISSING with a store)  2 history size  3 history ttl ms  4 exclude conn
--      5 stored "1"/"0"  6 frame (JSON object)  7 message id
--      8 key window ms ("0": no key)  9 channel  10 state threshold
--      11 state request retry ms  12 room  13 mark dirty "1"/"0"
-- Returns {"ok", epoch, seq} or, for a key seen within the window in the
-- same epoch (or the one it forked from), {"dup", id, seq, epoch} of the
-- first publish.
local meta, stream, state, state_req, idem = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local size, ttl, exclude, stored, frame, id = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local key_window, channel = tonumber(ARGV[8]), ARGV[9]

local epoch, seq = ensure_epoch(meta, stream, state, ARGV[1], ttl)

-- A key names the publish it was first sent with, in the epoch it was
-- stored in: once that history is gone (reset, expired, lost), the
-- publish is a new one.
if key_window > 0 then
  local prev = redis.call('GET', idem)
  if prev then
    local a = string.find(prev, '\n', 1, true)
    local b = string.find(prev, '\n', a + 1, true)
    local prev_epoch = string.sub(prev, b + 1)
    -- A fork (fork.lua) renames the epoch and keeps its history.
    if prev_epoch == epoch or prev_epoch == redis.call('HGET', meta, 'forked_from') then
      return {'dup', string.sub(prev, 1, a - 1), string.sub(prev, a + 1, b - 1), epoch}
    end
  end
end
if stored ~= '1' then
  redis.call(PUBLISH_CMD, channel, envelope(exclude, '', frame))
  if key_window > 0 then
    redis.call('SET', idem, id .. '\n0\n' .. epoch, 'PX', key_window)
  end
  return {'ok', epoch, '0'}
end

seq = redis.call('HINCRBY', meta, 'seq', 1)
local seq_s = string.format('%d', seq)
local full = string.sub(frame, 1, -2) .. ',"seq":' .. seq_s .. '}'
redis.call('XADD', stream, 'MAXLEN', size, seq_s .. '-0', 'd', full, 'x', exclude)
redis.call('PEXPIRE', meta, ttl)
redis.call('PEXPIRE', stream, ttl)
redis.call('PEXPIRE', state, ttl)
mark_dirty(KEYS[6], ARGV[12], ARGV[13], meta, stream, state)

-- A state request is due once threshold stored messages follow the latest
-- state, and again each retry period while none arrives.
local due = false
local state_seq = tonumber(redis.call('HGET', state, 'seq')) or 0
if seq - state_seq >= tonumber(ARGV[10]) then
  if redis.call('SET', state_req, seq_s, 'NX', 'PX', ARGV[11]) then
    due = true
  end
end
redis.call(PUBLISH_CMD, channel, envelope(exclude, stored_pos(epoch, seq, due), full))
if key_window > 0 then
  redis.call('SET', idem, id .. '\n' .. seq_s .. '\n' .. epoch, 'PX', key_window)
end
return {'ok', epoch, seq_s}
