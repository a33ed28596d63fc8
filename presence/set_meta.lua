-- set_meta: ARGV[8] = conn, ARGV[9] = its user, ARGV[10] = compact meta
-- JSON object. Replaces the user's meta. Returns the member as JSON, or
-- nil for a conn the room does not hold.
if not redis.call('ZSCORE', K_CONNS, ARGV[8] .. '\n' .. ARGV[9]) then
  return false
end
local v = redis.call('HGET', K_MEMBERS, ARGV[9])
if not v then
  return false
end
local n, rec = parse(v)
local _, _, _, d = fields(rec)
rec = string.sub(rec, 1, d) .. ARGV[10]
redis.call('HSET', K_MEMBERS, ARGV[9], value(n, rec))
local m = member_json(rec, n)
publish('update', m)
return m
