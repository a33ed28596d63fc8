-- save_done: the room was saved as room_snapshot read it. It leaves the
-- dirty index unless it changed meanwhile (position, state or document
-- seq); then it stays, due again from the claim's time (a change after
-- the read is no older than that).
-- Once unmarked, the room's keys that lost their TTL while it was dirty
-- (mark_dirty) get it back: HISTORY_TTL for the stream's, DOC_TTL for the
-- document's, from now.
-- KEYS 1 the room's dirty index 2 meta 3 state 4 doc 5 stream 6 doc_log
-- ARGV 1 room 2 epoch 3 seq 4 state seq 5 doc epoch 6 doc seq
--      (as room_snapshot gave them) 7 claim time (ms)
--      8 history ttl ms 9 doc ttl ms
-- Returns 1 when unmarked, 0 when left dirty.
local m = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
local s = redis.call('HGET', KEYS[3], 'seq')
local d = redis.call('HMGET', KEYS[4], 'epoch', 'seq')
if (m[1] or '') == ARGV[2] and (m[2] or '') == ARGV[3] and (s or '') == ARGV[4]
    and (d[1] or '') == ARGV[5] and (d[2] or '') == ARGV[6] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  for _, k in ipairs({{KEYS[2], ARGV[8]}, {KEYS[5], ARGV[8]}, {KEYS[3], ARGV[8]}, {KEYS[4], ARGV[9]}, {KEYS[6], ARGV[9]}}) do
    if redis.call('PTTL', k[1]) == -1 then
      redis.call('PEXPIRE', k[1], k[2])
    end
  end
  return 1
end
redis.call('ZADD', KEYS[1], 'XX', ARGV[7], ARGV[1])
return 0
