-- join: ARGV[8..12] = conn, user, id JSON, name JSON, meta. Returns the
-- member as JSON. A new conn costs 5 commands whatever the room's size:
-- ZADD conns, HGET + HSET members, PUBLISH, ZADD due LT; a conn already
-- held 2 (ZADD, HGET).
local m = add_conn(ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
return m
