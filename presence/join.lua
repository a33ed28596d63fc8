-- join: ARGV[8..14] = conn, user, id JSON, name JSON, role, meta, index ("0":
-- the caller holds another live session in the room, which is in the
-- sweep index already). Returns the member as JSON. A new conn costs 4 commands whatever
-- the room's size: ZADD conns, HGET + HSET members, PUBLISH (5 with
-- ZADD due LT when indexing); a conn already held 2 (ZADD, HGET).
local m = add_conn(ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14] == '1')
return m
