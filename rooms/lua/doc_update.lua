-- doc_update: the update message at seq ARGV[2] of a room's Yjs document
-- in epoch ARGV[1], for an instance that got its publication without its
-- bytes (doc_append).
-- KEYS 1 doc  2 doc_log
-- Returns the message, or nil when the epoch is another or the update was
-- compacted into the base.
local v = redis.call('HMGET', KEYS[1], 'epoch', 'base_seq', 'seq')
if v[1] ~= ARGV[1] then
  return false
end
local seq, base_seq = tonumber(ARGV[2]), tonumber(v[2])
if seq <= base_seq or seq > tonumber(v[3]) then
  return false
end
return redis.call('LINDEX', KEYS[2], seq - base_seq - 1)
