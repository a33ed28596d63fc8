-- sweep: ARGV[8] = most timers to end in one call. Removes conns whose
-- expiry passed (leave reason timeout for a user's last conn) and ends
-- leave graces that ran out (leave reason closed). Every instance may run
-- it at once: the checks and the publish happen under the script's
-- atomicity, so each leave is published exactly once. Then sets the
-- room's due entry exactly. Returns 1 when timers are left over for
-- another call, else 0.
local limit = tonumber(ARGV[8])
local ended = redis.call('ZRANGEBYSCORE', K_CONNS, '-inf', '(' .. int(NOW), 'LIMIT', 0, limit)
for _, e in ipairs(ended) do
  redis.call('ZREM', K_CONNS, e)
  local nl = string.find(e, '\n', 1, true)
  if nl then
    local user = string.sub(e, nl + 1)
    local v = redis.call('HGET', K_MEMBERS, user)
    if v then
      local n, rec = parse(v)
      if nl > 1 then
        uncount_conn(user, n, rec, 'timeout') -- a conn expired
      elseif n <= 0 then
        drop_user(user, rec, 'closed') -- a grace ran out
      end -- else the user came back within the grace
    end
  end
end
set_due()
if #ended >= limit then
  return 1
end
return 0
