-- Shared by every presence script: Go prepends rooms/wire's envelope.lua
-- and this file to each of them.
--
-- KEYS (one room, both with the {room} hash tag, then the sweep index)
--   1 conns    ZSET of the room's timers:
--                "<conn>\n<user>" -> expiry of a connection (unix ms)
--                "\n<user>"       -> end of the user's leave grace (unix ms)
--   2 members  HASH user -> member value (see value below)
--   3 due      ZSET room -> a time at or before the room's earliest timer
-- ARGV
--   1 now (unix ms; "0" means Redis server time)
--   2 TTL ms  3 leave grace ms  4 key safety-net TTL ms
--   5 room  6 room as a JSON string  7 pub/sub channel of the room
--   8.. operation arguments
--
-- Invariants every script keeps (each runs atomically):
--   - a user has a member value iff they have a conn or a grace entry;
--     its count is the number of their conns, 0 while in grace;
--   - while a timer is in conns, due holds the room at or before it.
-- A grace entry may outlive its grace (the user came back); sweep drops
-- it when it comes due. due may be early or hold an empty room; sweep
-- then sets it exactly (or removes it).
local K_CONNS, K_MEMBERS, K_DUE = KEYS[1], KEYS[2], KEYS[3]
local TTL, GRACE, KEEP = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ROOM, ROOM_JSON, CHANNEL = ARGV[5], ARGV[6], ARGV[7]

local NOW = tonumber(ARGV[1])
if NOW == 0 then
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Webhooks (rooms/wire webhook.lua, prepended): with KEYS[4..7] the room's
-- webhook queue and KEYS[8] its room.vacated marker, the last two ARGV
-- are the vacate delay ms and the queue bound, and member and room events
-- are queued here, in the step that decides them. NARGS is the number of
-- operation ARGV, without those two.
local WH, NARGS = nil, #ARGV
if #KEYS > 3 then
  WH = {KEYS[4], KEYS[5], KEYS[6], KEYS[7]}
  NARGS = #ARGV - 2
end

local function wh_member(typ, member, reason)
  local data = '{"room":' .. ROOM_JSON .. ',"member":' .. member
  if reason then
    data = data .. ',"reason":"' .. reason .. '"'
  end
  wh_add(WH, NOW, NOW, ROOM, typ, '', data .. '}', tonumber(ARGV[#ARGV]))
end

-- wh_joined queues member.joined, after room.occupied when the member is
-- the room's first, unless the room's room.vacated is still waiting: it
-- is cancelled instead, and the room was never reported empty.
local function wh_joined(member)
  if not WH then
    return
  end
  if redis.call('HLEN', K_MEMBERS) == 1 and not wh_cancel(WH, KEYS[8]) then
    wh_add(WH, NOW, NOW, ROOM, 'room.occupied', '', '{"room":' .. ROOM_JSON .. '}', tonumber(ARGV[#ARGV]))
  end
  wh_member('member.joined', member)
end

-- wh_left queues member.left, then, when the room is empty, room.vacated
-- due after the vacate delay.
local function wh_left(member, reason)
  if not WH then
    return
  end
  wh_member('member.left', member, reason)
  if redis.call('HLEN', K_MEMBERS) == 0 then
    wh_cancel(WH, KEYS[8])
    local k = wh_add(WH, NOW, NOW + tonumber(ARGV[#ARGV - 1]), ROOM, 'room.vacated', KEYS[8], '{"room":' .. ROOM_JSON .. '}', tonumber(ARGV[#ARGV]))
    redis.call('SET', KEYS[8], 'p' .. k, 'PX', 86400000)
  end
end

local function int(n)
  return string.format('%d', n)
end

-- A member value is "conns\nsince\nid\nname\nrole\nmeta": the user's conn
-- count, then the record, where id and name are JSON strings, role is
-- write or read (bare) and meta a compact JSON object, all encoded by Go
-- exactly as presence.Frame encodes them.
-- Scripts splice these bytes into frames and never decode them, so a frame
-- is byte-identical to presence.Frame and the client's meta is never
-- round-tripped through cjson. parse returns the count and the record.
local function parse(v)
  local a = string.find(v, '\n', 1, true)
  local rec = string.sub(v, a + 1)
  -- A record written before roles, "since\nid\nname\nmeta", is a write
  -- member's (meta, compact JSON, holds no newline).
  local x = string.find(rec, '\n', 1, true)
  local y = string.find(rec, '\n', x + 1, true)
  local z = string.find(rec, '\n', y + 1, true)
  if not string.find(rec, '\n', z + 1, true) then
    rec = string.sub(rec, 1, z) .. 'write\n' .. string.sub(rec, z + 1)
  end
  return tonumber(string.sub(v, 1, a - 1)), rec
end

local function value(n, rec)
  return int(n) .. '\n' .. rec
end

-- fields returns the ends of a record's first four fields (since, id,
-- name, role); meta follows the fourth.
local function fields(rec)
  local a = string.find(rec, '\n', 1, true)
  local b = string.find(rec, '\n', a + 1, true)
  local c = string.find(rec, '\n', b + 1, true)
  local d = string.find(rec, '\n', c + 1, true)
  return a, b, c, d
end

local function member_json(rec, conns)
  local a, b, c, d = fields(rec)
  return '{"id":' .. string.sub(rec, a + 1, b - 1) ..
    ',"name":' .. string.sub(rec, b + 1, c - 1) ..
    ',"role":"' .. string.sub(rec, c + 1, d - 1) ..
    '","meta":' .. string.sub(rec, d + 1) ..
    ',"conns":' .. int(conns) ..
    ',"since":' .. string.sub(rec, 1, a - 1) .. '}'
end

-- publish sends a presence frame to the room in the broker's envelope
-- (rooms/wire envelope.lua, prepended by Go): nobody excluded, no position.
local function publish(typ, member, reason)
  local f = '{"type":"' .. typ .. '","room":' .. ROOM_JSON .. ',"member":' .. member
  if reason then
    f = f .. ',"reason":"' .. reason .. '"'
  end
  redis.call(PUBLISH_CMD, CHANNEL, envelope('', '', f .. '}'))
end

-- count_conn records a conn of user that conns did not hold (it was just
-- added): join when the user is new, update otherwise (another tab, or
-- back within the leave grace, whose entry sweep drops). A write conn
-- makes a read member write. Returns the member as JSON.
local function count_conn(user, id, name, role, meta)
  local v = redis.call('HGET', K_MEMBERS, user)
  local typ, n, rec = 'join', 1, nil
  if v then
    typ, n, rec = 'update', parse(v)
    n = n + 1
    local _, _, c, d = fields(rec)
    if role == 'write' and string.sub(rec, c + 1, d - 1) ~= 'write' then
      rec = string.sub(rec, 1, c) .. 'write' .. string.sub(rec, d)
    end
  else
    rec = int(NOW) .. '\n' .. id .. '\n' .. name .. '\n' .. role .. '\n' .. meta
  end
  redis.call('HSET', K_MEMBERS, user, value(n, rec))
  local m = member_json(rec, n)
  publish(typ, m)
  if typ == 'join' then
    wh_joined(m)
  end
  return m
end

-- add_conn adds conn of user or, for a conn already held, pushes its
-- expiry. Returns the member as JSON and whether the conn was added.
local function add_conn(conn, user, id, name, role, meta, index)
  local exp = NOW + TTL
  if redis.call('ZADD', K_CONNS, int(exp), conn .. '\n' .. user) == 0 then
    local v = redis.call('HGET', K_MEMBERS, user)
    if v then
      local n, rec = parse(v)
      return member_json(rec, n), false
    end
    -- A held conn without a member breaks the invariant; count it again.
  end
  local m = count_conn(user, id, name, role, meta)
  -- A room that has a timer has its due entry at or before it, and so
  -- before this later one: a caller that holds another live session in
  -- the room (index false) skips the command. Heartbeats set it exactly.
  if index then
    redis.call('ZADD', K_DUE, 'LT', int(exp), ROOM)
  end
  return m, true
end

local function drop_user(user, rec, reason)
  redis.call('HDEL', K_MEMBERS, user)
  local m = member_json(rec, 0)
  publish('leave', m, reason)
  wh_left(m, reason)
end

-- uncount_conn takes a removed conn off its user's count: update while
-- the user has other conns, else leave.
local function uncount_conn(user, n, rec, reason)
  n = n - 1
  if n > 0 then
    redis.call('HSET', K_MEMBERS, user, value(n, rec))
    publish('update', member_json(rec, n))
  else
    drop_user(user, rec, reason)
  end
end

-- set_due sets the room's due entry to its earliest timer, exactly.
local function set_due()
  local first = redis.call('ZRANGE', K_CONNS, 0, 0, 'WITHSCORES')
  if first[2] then
    redis.call('ZADD', K_DUE, first[2], ROOM)
  else
    redis.call('ZREM', K_DUE, ROOM)
  end
end
