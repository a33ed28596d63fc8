-- release: gives up a queue's lease if the calling instance holds it
-- (shutdown), so the next instance to claim takes the queue at once.
-- KEYS[1] = the lease, ARGV[1] = the instance's owner id.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
