-- doc_updates: the update messages after seq ARGV[2] of a room's Yjs
-- document in epoch ARGV[1].
-- KEYS 1 doc  2 doc_log
-- Returns {epoch, seq, "1", messages...}, or {epoch, seq, "0"} when the
-- epoch is another or the updates were compacted into the base ({} when
-- there is no document).
local v = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'base_seq')
if not v[1] then
  return {}
end
local after, base_seq = tonumber(ARGV[2]), tonumber(v[3])
if v[1] ~= ARGV[1] or after < base_seq then
  return {v[1], v[2], '0'}
end
local out = {v[1], v[2], '1'}
if after >= tonumber(v[2]) then
  return out
end
for _, m in ipairs(redis.call('LRANGE', KEYS[2], after - base_seq, -1)) do
  out[#out + 1] = m
end
return out
