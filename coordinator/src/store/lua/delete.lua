local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[1] .. 'l:' .. id, ARGV[1] .. 'ls:' .. id)
end
local keys = redis.call('SMEMBERS', KEYS[1])
for i = 1, #keys, 1000 do
  redis.call('DEL', unpack(keys, i, math.min(i + 999, #keys)))
end
redis.call('DEL', KEYS[1], KEYS[2])
return ids
