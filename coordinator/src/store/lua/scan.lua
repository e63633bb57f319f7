local prefix = ARGV[1]
local B = tonumber(ARGV[2])
local from = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local out = {}
local n = 0
local lo = math.floor(from / B)
while n < limit do
  local bs = redis.call('ZRANGEBYSCORE', KEYS[1], lo, '+inf', 'LIMIT', 0, 16)
  if #bs == 0 then break end
  for _, b in ipairs(bs) do
    if n >= limit then break end
    local kv = redis.call('HGETALL', prefix .. b)
    local items = {}
    for i = 1, #kv, 2 do
      local slot = tonumber(kv[i])
      if slot >= from then items[#items + 1] = {slot, kv[i + 1]} end
    end
    table.sort(items, function(x, y) return x[1] < y[1] end)
    for _, it in ipairs(items) do
      if n >= limit then break end
      out[#out + 1] = it[1]
      out[#out + 1] = it[2]
      n = n + 1
    end
    lo = tonumber(b) + 1
  end
end
return out
