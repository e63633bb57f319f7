local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, id in ipairs(ids) do
  local h = redis.call('HGETALL', ARGV[1] .. 'l:' .. id)
  if #h > 0 then
    local f = {}
    for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
    out[#out + 1] = {id, f.model, f.mode, f.worker, f.deadline,
      redis.call('SMEMBERS', ARGV[1] .. 'ls:' .. id), 0}
  end
end
return out
