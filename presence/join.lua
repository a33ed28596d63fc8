-- join: ARGV[8..12] = conn, user, id JSON, name JSON, meta.
-- Returns the member as JSON.
local m = add_conn(ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
finish()
return m
