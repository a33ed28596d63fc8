-- restore: load a room Redis does not hold back from the store, each part
-- only if Redis still lacks it: the stream (meta, stream, state) when meta
-- is absent, the document when doc is absent. Two instances that missed
-- the room at once both restore; the second changes nothing, and both
-- then read the same epoch. The room is not marked dirty: the store has it.
-- KEYS 1 meta 2 stream 3 state 4 doc 5 doc_log
-- ARGV 1 history ttl ms 2 doc ttl ms
--      3 epoch ("": the store holds no stream) 4 seq
--      5 state seq ("": none) 6 state data
--      7 doc epoch ("": the store holds no document) 8 doc seq 9 doc base seq
--      10 doc base 11 n, the number of stored messages
--      12 … 11+3n: seq, frame, exclude of each message, in seq order
--      then the document's update messages, in seq order
-- Returns {stream restored 0/1, document restored 0/1}.
local meta, stream, state, doc, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local n = tonumber(ARGV[11])
local out = {0, 0}
if ARGV[3] ~= '' and redis.call('EXISTS', meta) == 0 then
  redis.call('DEL', stream, state)
  redis.call('HSET', meta, 'epoch', ARGV[3], 'seq', ARGV[4])
  for i = 0, n - 1 do
    local a = 12 + 3 * i
    redis.call('XADD', stream, ARGV[a] .. '-0', 'd', ARGV[a + 1], 'x', ARGV[a + 2])
  end
  if ARGV[5] ~= '' then
    redis.call('HSET', state, 'seq', ARGV[5], 'data', ARGV[6])
    redis.call('PEXPIRE', state, ARGV[1])
  end
  redis.call('PEXPIRE', meta, ARGV[1])
  redis.call('PEXPIRE', stream, ARGV[1])
  out[1] = 1
end
if ARGV[7] ~= '' and redis.call('EXISTS', doc) == 0 then
  redis.call('DEL', log)
  local log_bytes = 0
  for i = 12 + 3 * n, #ARGV do
    redis.call('RPUSH', log, ARGV[i])
    log_bytes = log_bytes + #ARGV[i]
  end
  redis.call('HSET', doc, 'epoch', ARGV[7], 'seq', ARGV[8], 'base_seq', ARGV[9],
    'base', ARGV[10], 'base_bytes', #ARGV[10], 'log_bytes', log_bytes)
  redis.call('PEXPIRE', doc, ARGV[2])
  redis.call('PEXPIRE', log, ARGV[2])
  out[2] = 1
end
return out
