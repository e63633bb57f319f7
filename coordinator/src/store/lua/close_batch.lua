-- Closes a batch: its unrecorded slots go to the unit's retry queue.
-- KEYS: batch hash, batch deadlines, keyset. ARGV: sweep prefix, B, batch id.
-- Returns the number of slots requeued.
local unit = redis.call('HGET', KEYS[1], 'unit')
if not unit then return 0 end
local slots = redis.call('HGET', KEYS[1], 'slots') or ''
local p = ARGV[1]
local B = tonumber(ARGV[2])
local queue = p .. 'q:' .. unit
local n = 0
for s in string.gmatch(slots, '[^,]+') do
  local slot = tonumber(s)
  local bucket = p .. 'r:' .. unit .. ':' .. string.format('%d', math.floor(slot / B))
  if redis.call('HEXISTS', bucket, s) == 0 then
    redis.call('ZADD', queue, slot, s)
    n = n + 1
  end
end
if n > 0 then redis.call('SADD', KEYS[3], queue) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[3])
return n
