-- sweep: ARGV[8] = most entries to end in one call. Removes conns whose
-- expiry passed (leave reason timeout for a user's last conn) and ends
-- leave graces that ran out (leave reason closed). Every instance may run
-- it at once: the checks and the publish happen under the script's
-- atomicity, so each leave is published exactly once. Returns 1 when
-- entries are left over for another call, else 0.
local limit = tonumber(ARGV[8])
local before = '(' .. int(NOW)
local expired = redis.call('ZRANGEBYSCORE', K_CONNS, '-inf', before, 'LIMIT', 0, limit)
for _, conn in ipairs(expired) do
  remove_conn(conn, 'timeout')
end
local ended = redis.call('ZRANGEBYSCORE', K_GRACE, '-inf', before, 'LIMIT', 0, limit)
for _, user in ipairs(ended) do
  local rec = redis.call('HGET', K_MEMBERS, user)
  if rec and conn_count(user) <= 0 then
    drop_user(user, rec, 'closed')
  else
    redis.call('ZREM', K_GRACE, user)
  end
end
finish()
if #expired >= limit or #ended >= limit then
  return 1
end
return 0
