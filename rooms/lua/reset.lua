-- reset: forget the room's history and state, start epoch ARGV[1] and
-- announce it on the room channel (position "<epoch>:0", empty frame), so
-- every instance closes the room's connections of the old epoch.
-- The room's Yjs document goes too.
-- KEYS 1 meta 2 stream 3 state 4 state_req 5 state_claim 6 doc 7 doc_log
--      8 the room's dirty index
-- ARGV 1 new epoch 2 history ttl ms 3 channel 4 room 5 mark dirty "1"/"0"
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'seq', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
mark_dirty(KEYS[8], ARGV[4], ARGV[5], KEYS[1])
redis.call(PUBLISH_CMD, ARGV[3], envelope('', stored_pos(ARGV[1], 0, false), ''))
return ARGV[1]
