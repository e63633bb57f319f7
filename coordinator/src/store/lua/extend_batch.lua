-- KEYS: batch hash, batch deadlines. ARGV: worker, deadline, batch id.
-- 1 if the worker still holds the open batch, else 0.
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'deadline', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
