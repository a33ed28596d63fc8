-- doc_compact: replace the updates up to seq ARGV[2] of a room's Yjs
-- document by their merge with its base, ARGV[3], unless the document is
-- in another epoch than ARGV[1] or was compacted that far already.
-- KEYS 1 doc  2 doc_log
-- Returns 1 when compacted, 0 when not.
local doc, log = KEYS[1], KEYS[2]
local v = redis.call('HMGET', doc, 'epoch', 'seq', 'base_seq')
if v[1] ~= ARGV[1] then
  return 0
end
local upto, seq, base_seq = tonumber(ARGV[2]), tonumber(v[2]), tonumber(v[3])
if upto <= base_seq or upto > seq then
  return 0
end
local n = upto - base_seq
local gone = 0
for _, m in ipairs(redis.call('LRANGE', log, 0, n - 1)) do
  gone = gone + #m
end
redis.call('LTRIM', log, n, -1)
redis.call('HSET', doc, 'base', ARGV[3], 'base_seq', upto, 'base_bytes', #ARGV[3])
redis.call('HINCRBY', doc, 'log_bytes', -gone)
return 1
