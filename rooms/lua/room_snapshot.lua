-- room_snapshot: everything of a room the store keeps, read in one step,
-- for the saver (write-behind). Fields Redis lacks are "".
-- KEYS 1 meta 2 stream 3 state 4 doc 5 doc_log
-- Returns {epoch, seq, state seq, state data, doc epoch, doc seq,
-- doc base seq, doc base, n, n × (seq, frame, exclude), update messages…}.
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
local s = redis.call('HMGET', KEYS[3], 'seq', 'data')
local d = redis.call('HMGET', KEYS[4], 'epoch', 'seq', 'base_seq', 'base')
local out = {m[1] or '', m[2] or '', s[1] or '', s[2] or '', d[1] or '', d[2] or '', d[3] or '', d[4] or '', 0}
if m[1] then
  local entries = redis.call('XRANGE', KEYS[2], '-', '+')
  out[9] = #entries
  for _, e in ipairs(entries) do
    local id = e[1]
    out[#out + 1] = string.sub(id, 1, string.find(id, '-', 1, true) - 1)
    out[#out + 1] = e[2][2]
    out[#out + 1] = e[2][4] or ''
  end
end
if d[1] then
  for _, u in ipairs(redis.call('LRANGE', KEYS[5], 0, -1)) do
    out[#out + 1] = u
  end
end
return out
