-- doc_read: a room's Yjs document, whole.
-- KEYS 1 doc  2 doc_log
-- Returns {} when there is none, else
-- {epoch, seq, base_seq, base, log_bytes, update messages...}.
local v = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'base_seq', 'base', 'log_bytes')
if not v[1] then
  return {}
end
local out = {v[1], v[2], v[3], v[4] or '', v[5]}
for _, m in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  out[#out + 1] = m
end
return out
