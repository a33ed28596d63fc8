-- claim_state: make this instance the one to ask for the room's state at
-- seq, and pick the connection: the first of the candidates (this
-- instance's state=1 connections, shuffled by Go) that is not the one asked
-- last time, so a retry goes to another client whichever instance it is on.
-- KEYS 1 state_claim 2 state; ARGV 1 seq 2 claim ttl ms 3 history ttl ms
--      4.. candidate connection ids
-- Returns the connection to ask, or nil (another instance claimed, or no
-- candidate but the one that did not answer).
local asked = redis.call('HGET', KEYS[2], 'asked')
local pick
for i = 4, #ARGV do
  if ARGV[i] ~= asked then
    pick = ARGV[i]
    break
  end
end
if not pick then
  return false
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
-- A state without a TTL has a change the store does not have yet
-- (mark_dirty): it keeps none until it is saved.
local unsaved = redis.call('PTTL', KEYS[2]) == -1
redis.call('HSET', KEYS[2], 'asked', pick)
if not unsaved then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return pick
