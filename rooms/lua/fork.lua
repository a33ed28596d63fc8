-- fork: move the room to epoch ARGV[3] if it is still in epoch ARGV[4],
-- whose history forked (instances delivered messages a failover lost, and
-- the promoted replica gave their seqs to others). The history, state and
-- seq stay, under the new name; publish keys of the old epoch keep
-- answering (forked_from); the change is announced on the room channel
-- ("<epoch>:<seq>", empty frame) so every instance resyncs the
-- connections of the old epoch. A room in another epoch is newer: its
-- position is returned as it is.
-- KEYS 1 meta 2 stream 3 state 4 the room's dirty index
-- ARGV 1 new epoch if the room has none (MISSING with a store)
--      2 history ttl ms 3 the fork's epoch 4 the forked epoch 5 channel
--      6 room 7 mark dirty "1"/"0"
-- Returns {epoch, seq}.
local epoch, seq = ensure_epoch(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
local seq_s = string.format('%d', seq)
if epoch ~= ARGV[4] then
  return {epoch, seq_s}
end
redis.call('HSET', KEYS[1], 'epoch', ARGV[3], 'forked_from', ARGV[4])
mark_dirty(KEYS[4], ARGV[6], ARGV[7])
redis.call(PUBLISH_CMD, ARGV[5], envelope('', stored_pos(ARGV[3], seq, false), ''))
return {ARGV[3], seq_s}
