-- Hands open batches whose deadline passed to a new worker.
-- KEYS: batch deadlines. ARGV: sweep prefix, now, worker, deadline, max.
-- Returns, per batch claimed: {rec, slots, worker, deadline, provider}.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[5]))
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[1] .. 'bt:' .. id
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'worker', ARGV[3], 'deadline', ARGV[4])
    redis.call('ZADD', KEYS[1], ARGV[4], id)
    out[#out + 1] = redis.call('HMGET', key, 'rec', 'slots', 'worker', 'deadline', 'provider')
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
