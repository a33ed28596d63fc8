-- leave: ARGV[8] = conn whose socket ended, ARGV[9] = its user. Publishes
-- update while the user has other conns, else leave reason closed or,
-- with a leave grace, update with conns 0 and a grace entry that sweep
-- turns into the leave. 4 commands (HGET, ZREM, HSET or HDEL, PUBLISH);
-- 6 when a grace starts (+ ZADD of the grace entry, ZADD due LT); 1-4
-- for a conn not held.
local conn, user = ARGV[8], ARGV[9]
local entry = conn .. '\n' .. user
local v = redis.call('HGET', K_MEMBERS, user)
if not v then
  redis.call('ZREM', K_CONNS, entry) -- not held, by the invariant
  return 0
end
local n, rec = parse(v)
if n == 1 and GRACE > 0 then
  -- The user's last conn, if it is held. The grace entry goes in first,
  -- so conns is never emptied and created again: it keeps its safety-net
  -- TTL (no heartbeat may come to this room again).
  local g = '\n' .. user
  local gend = NOW + GRACE
  redis.call('ZADD', K_CONNS, int(gend), g)
  if redis.call('ZREM', K_CONNS, entry) == 0 then
    redis.call('ZREM', K_CONNS, g) -- not held: the user's conn is another one
    return 0
  end
  redis.call('HSET', K_MEMBERS, user, value(0, rec))
  publish('update', member_json(rec, 0))
  redis.call('ZADD', K_DUE, 'LT', int(gend), ROOM)
  return 1
end
if redis.call('ZREM', K_CONNS, entry) == 0 then
  return 0
end
uncount_conn(user, n, rec, 'closed')
return 1
