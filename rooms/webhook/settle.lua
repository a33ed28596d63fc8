-- settle: records the outcome of delivering claimed events of one queue.
-- KEYS: due, events, order. ARGV: groups of 3 (key, record, due ms):
-- record "" removes the event (delivered, or dropped after its last
-- try); else the event gets record (its attempts and URLs left) and is
-- due again at due ms. An event no longer queued (the bound dropped it)
-- is left alone.
for i = 1, #ARGV, 3 do
  local k = ARGV[i]
  if ARGV[i + 1] == '' then
    redis.call('ZREM', KEYS[1], k)
    redis.call('ZREM', KEYS[3], k)
    redis.call('HDEL', KEYS[2], k)
  elseif redis.call('HEXISTS', KEYS[2], k) == 1 then
    redis.call('HSET', KEYS[2], k, ARGV[i + 1])
    redis.call('ZADD', KEYS[1], ARGV[i + 2], k)
  end
end
return 0
