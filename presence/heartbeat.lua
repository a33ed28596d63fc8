-- heartbeat: ARGV[8..] = groups of 5 (conn, user, id JSON, name JSON, meta),
-- one per live conn of the calling instance in this room. Pushes each
-- conn's expiry; a conn the store lost (flush, restart, swept after a
-- stall) is added back with join semantics. Then sets the room's due
-- entry exactly and pushes the safety-net TTL of the room's keys and of
-- the due index: joins and leaves leave TTLs alone, so a key a join
-- created gets its TTL here, within one heartbeat. Returns how many conns
-- were added back.
local added = 0
local exp = int(NOW + TTL)
local chunk = 500 -- conns per ZMSCORE/ZADD: bounded by Lua's unpack
for first = 8, NARGS, 5 * chunk do
  local last = math.min(NARGS, first + 5 * chunk - 1)
  local entries = {}
  for i = first, last, 5 do
    entries[#entries + 1] = ARGV[i] .. '\n' .. ARGV[i + 1]
  end
  local scores = redis.call('ZMSCORE', K_CONNS, unpack(entries))
  local held = {}
  for j, e in ipairs(entries) do
    if scores[j] then
      held[#held + 1] = exp
      held[#held + 1] = e
    else
      local i = first + 5 * (j - 1)
      redis.call('ZADD', K_CONNS, exp, e)
      count_conn(ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
      added = added + 1
    end
  end
  if #held > 0 then
    redis.call('ZADD', K_CONNS, unpack(held))
  end
end
set_due()
redis.call('PEXPIRE', K_CONNS, KEEP)
redis.call('PEXPIRE', K_MEMBERS, KEEP)
redis.call('PEXPIRE', K_DUE, KEEP)
return added
