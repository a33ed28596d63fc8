-- heartbeat: ARGV[8..] = groups of 6 (conn, user, id JSON, name JSON,
-- role, meta), one per live conn of the calling instance in this room. Pushes each
-- conn's expiry; a conn the store lost (flush, restart, swept after a
-- stall) is added back with join semantics. Then sets the room's due
-- entry exactly and pushes the safety-net TTL of the room's keys and of
-- the due index: joins and leaves leave TTLs alone, so a key a join
-- created gets its TTL here, within one heartbeat. When it added a conn
-- back, it publishes the room's member list (a sync frame) in the same
-- step. Returns how many conns were added back.
local added = 0
local exp = int(NOW + TTL)
local chunk = 500 -- conns per ZMSCORE/ZADD: bounded by Lua's unpack
for first = 8, NARGS, 6 * chunk do
  local last = math.min(NARGS, first + 6 * chunk - 1)
  local entries = {}
  for i = first, last, 6 do
    entries[#entries + 1] = ARGV[i] .. '\n' .. ARGV[i + 1]
  end
  local scores = redis.call('ZMSCORE', K_CONNS, unpack(entries))
  local held = {}
  for j, e in ipairs(entries) do
    if scores[j] then
      held[#held + 1] = exp
      held[#held + 1] = e
    else
      local i = first + 6 * (j - 1)
      redis.call('ZADD', K_CONNS, exp, e)
      count_conn(ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
      added = added + 1
    end
  end
  if #held > 0 then
    redis.call('ZADD', K_CONNS, unpack(held))
  end
end
-- Conns added back: the store lost the room (a flush, a restart), and
-- with it users whose last socket closed before this heartbeat, whom no
-- leave will ever report. Every instance's clients get the room's member
-- list, published after the re-adds' events in the same step, so it
-- reflects every event before it on the channel and none after: a list
-- read first and published later could undo another instance's re-add.
if added > 0 then
  local all = redis.call('HGETALL', K_MEMBERS)
  local ms = {}
  for i = 1, #all, 2 do
    local n, rec = parse(all[i + 1])
    local a = string.find(rec, '\n', 1, true)
    ms[#ms + 1] = {since = tonumber(string.sub(rec, 1, a - 1)), user = all[i], json = member_json(rec, n)}
  end
  -- presence.Members' order: by join time, then user.
  table.sort(ms, function(x, y)
    if x.since ~= y.since then
      return x.since < y.since
    end
    return x.user < y.user
  end)
  local list = {}
  for i, m in ipairs(ms) do
    list[i] = m.json
  end
  redis.call(PUBLISH_CMD, CHANNEL, envelope('', '',
    '{"type":"sync","room":' .. ROOM_JSON .. ',"members":[' .. table.concat(list, ',') .. ']}'))
end
set_due()
redis.call('PEXPIRE', K_CONNS, KEEP)
redis.call('PEXPIRE', K_MEMBERS, KEEP)
redis.call('PEXPIRE', K_DUE, KEEP)
return added
