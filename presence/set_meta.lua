-- set_meta: ARGV[8] = conn, ARGV[9] = compact meta JSON object. Replaces
-- the meta of the conn's user. Returns the member as JSON, or nil for an
-- unknown conn.
local user = redis.call('HGET', K_CONN_USER, ARGV[8])
if not user then
  return false
end
local rec = redis.call('HGET', K_MEMBERS, user)
if not rec then
  return false
end
local _, _, c = split_record(rec)
rec = string.sub(rec, 1, c) .. ARGV[9]
redis.call('HSET', K_MEMBERS, user, rec)
local m = member_json(rec, conn_count(user))
publish('update', m)
finish()
return m
