-- history: up to ARGV[4] stored frames after seq ARGV[3], with the room's
-- position read in the same step.
-- KEYS 1 meta 2 stream 3 state; ARGV 1 new epoch 2 history ttl ms
--      3 after 4 limit
-- Returns {epoch, seq, seq1, frame1, exclude1, seq2, frame2, exclude2, ...}
-- (exclude: the connection the message was not sent to, or "").
local epoch, seq = ensure_epoch(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
local out = {epoch, string.format('%d', seq)}
local after = tonumber(ARGV[3])
if after >= seq then
  return out
end
local entries = redis.call('XRANGE', KEYS[2], string.format('%d', after + 1) .. '-0', '+', 'COUNT', ARGV[4])
for _, e in ipairs(entries) do
  local id = e[1]
  out[#out + 1] = string.sub(id, 1, string.find(id, '-', 1, true) - 1)
  local fields = e[2]
  out[#out + 1] = fields[2]
  out[#out + 1] = fields[4] or ''
end
return out
