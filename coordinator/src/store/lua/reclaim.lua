local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local r = release(ARGV[1], tonumber(ARGV[2]), id)
  if r then out[#out + 1] = r else redis.call('ZREM', KEYS[1], id) end
end
return out
