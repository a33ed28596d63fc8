-- position: the room's epoch and seq (starting an epoch if none).
-- KEYS 1 meta 2 stream 3 state; ARGV 1 new epoch 2 history ttl ms
local epoch, seq = ensure_epoch(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
return {epoch, string.format('%d', seq)}
