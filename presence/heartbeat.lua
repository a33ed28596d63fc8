-- heartbeat: ARGV[8..] = groups of 5 (conn, user, id JSON, name JSON, meta),
-- one per live conn of the calling instance in this room. Pushes each
-- conn's expiry; a conn the store lost (flush, restart, swept after a
-- stall) is added back with join semantics. Returns how many were added.
local added = 0
for i = 8, #ARGV, 5 do
  local _, new = add_conn(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
  if new then
    added = added + 1
  end
end
finish()
return added
