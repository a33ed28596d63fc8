-- doc_append: store one update message of a room's Yjs document and publish
-- it, so the document's pub/sub order is its seq order, unless it would
-- take the document's stored size (base + log + the update) past the
-- limit: then nothing changes and nothing is published. An update larger
-- than ARGV[7] is published without its bytes (an empty frame): Redis
-- cuts a subscriber whose pending output passes 32 MiB (its default
-- client-output-buffer-limit for pub/sub), which would cut every room of
-- that connection; the instances read the update from the log instead.
-- KEYS 1 doc  2 doc_log  3 the room's dirty index
-- ARGV 1 new epoch (MISSING with a store: see stream_lib.lua)  2 doc ttl ms  3 exclude conn  4 update message
--      5 channel  6 max stored bytes  7 max bytes published inline
--      8 room  9 mark dirty "1"/"0"
-- Returns {epoch, seq, base_seq, log_bytes, base_bytes}; refused: {'',
-- size it would have, log_bytes}.
local doc, log = KEYS[1], KEYS[2]
local v = redis.call('HMGET', doc, 'epoch', 'log_bytes', 'base_bytes')
local size = (tonumber(v[2]) or 0) + (tonumber(v[3]) or 0) + #ARGV[4]
if size > tonumber(ARGV[6]) then
  return {'', string.format('%d', size), string.format('%d', tonumber(v[2]) or 0)}
end
local epoch = v[1]
if not epoch then
  if ARGV[1] == MISSING then
    missing()
  end
  epoch = ARGV[1]
  redis.call('DEL', log)
  redis.call('HSET', doc, 'epoch', epoch, 'base_seq', 0, 'seq', 0, 'log_bytes', 0, 'base_bytes', 0)
end
local seq = redis.call('HINCRBY', doc, 'seq', 1)
redis.call('RPUSH', log, ARGV[4])
local log_bytes = redis.call('HINCRBY', doc, 'log_bytes', #ARGV[4])
redis.call('PEXPIRE', doc, ARGV[2])
redis.call('PEXPIRE', log, ARGV[2])
mark_dirty(KEYS[3], ARGV[8], ARGV[9], doc, log)
local inline = ARGV[4]
if #inline > tonumber(ARGV[7]) then
  inline = ''
end
redis.call(PUBLISH_CMD, ARGV[5], envelope(ARGV[3], doc_pos(epoch, seq), inline))
local b = redis.call('HMGET', doc, 'base_seq', 'base_bytes')
return {epoch, string.format('%d', seq), b[1], string.format('%d', log_bytes), b[2]}
