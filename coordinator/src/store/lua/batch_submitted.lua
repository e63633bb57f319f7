-- KEYS: batch hash. ARGV: provider id. 1 if the batch is open, else 0.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'provider', ARGV[1])
return 1
