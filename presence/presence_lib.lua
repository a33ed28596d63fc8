-- Shared by every presence script: Go prepends rooms/wire's envelope.lua
-- and this file to each of them.
--
-- KEYS (one room, all with the {room} hash tag, then two cluster-wide indexes)
--   1 conns       ZSET conn -> expiry (unix ms)
--   2 conn_user   HASH conn -> user id
--   3 conn_count  HASH user -> number of conns (0 while in leave grace)
--   4 members     HASH user -> member record (see record below)
--   5 grace       ZSET user -> end of leave grace (unix ms)
--   6 rooms       ZSET room -> number of members (the room index)
--   7 due         ZSET room -> earliest conn expiry or grace end (sweep index)
-- ARGV
--   1 now (unix ms; "0" means Redis server time)
--   2 TTL ms  3 leave grace ms  4 key safety-net TTL ms
--   5 room  6 room as a JSON string  7 pub/sub channel of the room
--   8.. operation arguments
local K_CONNS, K_CONN_USER, K_CONN_COUNT, K_MEMBERS, K_GRACE, K_ROOMS, K_DUE =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local TTL, GRACE, KEEP = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ROOM, ROOM_JSON, CHANNEL = ARGV[5], ARGV[6], ARGV[7]

local NOW = tonumber(ARGV[1])
if NOW == 0 then
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function int(n)
  return string.format('%d', n)
end

-- A member record is "since\nid\nname\nmeta" where id and name are JSON
-- strings and meta a compact JSON object, all encoded by Go exactly as
-- presence.Frame encodes them. Scripts splice these bytes into frames and
-- never decode them, so a frame is byte-identical to presence.Frame and the
-- client's meta is never round-tripped through cjson.
local function record(since, id, name, meta)
  return since .. '\n' .. id .. '\n' .. name .. '\n' .. meta
end

local function split_record(rec)
  local a = string.find(rec, '\n', 1, true)
  local b = string.find(rec, '\n', a + 1, true)
  local c = string.find(rec, '\n', b + 1, true)
  return a, b, c
end

local function member_json(rec, conns)
  local a, b, c = split_record(rec)
  return '{"id":' .. string.sub(rec, a + 1, b - 1) ..
    ',"name":' .. string.sub(rec, b + 1, c - 1) ..
    ',"meta":' .. string.sub(rec, c + 1) ..
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
  redis.call('PUBLISH', CHANNEL, envelope('', '', f .. '}'))
end

local function conn_count(user)
  return tonumber(redis.call('HGET', K_CONN_COUNT, user)) or 0
end

-- add_conn adds conn of user (join when the user is new, update otherwise)
-- or, for a conn already present, only pushes its expiry. It returns the
-- member as JSON and whether the conn was added.
local function add_conn(conn, user, id, name, meta)
  local owner = redis.call('HGET', K_CONN_USER, conn)
  if owner then
    local rec = redis.call('HGET', K_MEMBERS, owner)
    if rec then
      redis.call('ZADD', K_CONNS, int(NOW + TTL), conn)
      return member_json(rec, conn_count(owner)), false
    end
  end
  redis.call('ZADD', K_CONNS, int(NOW + TTL), conn)
  redis.call('HSET', K_CONN_USER, conn, user)
  local rec = redis.call('HGET', K_MEMBERS, user)
  if not rec then
    rec = record(int(NOW), id, name, meta)
    redis.call('HSET', K_MEMBERS, user, rec)
    redis.call('HSET', K_CONN_COUNT, user, 1)
    local m = member_json(rec, 1)
    publish('join', m)
    return m, true
  end
  local n = redis.call('HINCRBY', K_CONN_COUNT, user, 1)
  redis.call('ZREM', K_GRACE, user)
  local m = member_json(rec, n)
  publish('update', m)
  return m, true
end

local function drop_user(user, rec, reason)
  redis.call('HDEL', K_MEMBERS, user)
  redis.call('HDEL', K_CONN_COUNT, user)
  redis.call('ZREM', K_GRACE, user)
  publish('leave', member_json(rec, 0), reason)
end

-- remove_conn removes conn: update while the user has other conns, else
-- leave (or, for a closed socket with a leave grace, update with conns 0
-- and a grace entry that sweep turns into the leave).
local function remove_conn(conn, reason)
  local user = redis.call('HGET', K_CONN_USER, conn)
  redis.call('ZREM', K_CONNS, conn)
  if not user then
    return
  end
  redis.call('HDEL', K_CONN_USER, conn)
  local rec = redis.call('HGET', K_MEMBERS, user)
  if not rec then
    redis.call('HDEL', K_CONN_COUNT, user)
    return
  end
  local n = redis.call('HINCRBY', K_CONN_COUNT, user, -1)
  if n > 0 then
    publish('update', member_json(rec, n))
  elseif reason == 'closed' and GRACE > 0 then
    redis.call('HSET', K_CONN_COUNT, user, 0)
    redis.call('ZADD', K_GRACE, int(NOW + GRACE), user)
    publish('update', member_json(rec, 0))
  else
    drop_user(user, rec, reason)
  end
end

-- finish brings the room's index entries up to date and pushes the safety
-- net TTL of every key the script may have touched, so a room's keys always
-- expire together.
local function finish()
  local members = redis.call('HLEN', K_MEMBERS)
  if members > 0 then
    redis.call('ZADD', K_ROOMS, members, ROOM)
  else
    redis.call('ZREM', K_ROOMS, ROOM)
  end
  local due
  local c = redis.call('ZRANGE', K_CONNS, 0, 0, 'WITHSCORES')
  if c[2] then
    due = tonumber(c[2])
  end
  local g = redis.call('ZRANGE', K_GRACE, 0, 0, 'WITHSCORES')
  if g[2] and (not due or tonumber(g[2]) < due) then
    due = tonumber(g[2])
  end
  if due then
    redis.call('ZADD', K_DUE, int(due), ROOM)
  else
    redis.call('ZREM', K_DUE, ROOM)
  end
  for i = 1, 7 do
    redis.call('PEXPIRE', KEYS[i], KEEP)
  end
end

