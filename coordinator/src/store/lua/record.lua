local prev = redis.call('GET', KEYS[7])
if prev then return cjson.decode(prev) end
local prefix = ARGV[1]
local B = tonumber(ARGV[2])
local out = {}
local added = 0
local hwm = tonumber(redis.call('HGET', KEYS[1], 'hwm') or '0')
local newhwm = hwm
local touched = {}
local fanout = tonumber(ARGV[5])
if fanout > 0 then redis.call('SADD', KEYS[2], KEYS[8]) end
for i = 6, #ARGV, 2 do
  local slot = tonumber(ARGV[i])
  local bucket = string.format('%d', math.floor(slot / B))
  local n = redis.call('HSETNX', prefix .. bucket, ARGV[i], ARGV[i + 1])
  out[#out + 1] = n
  if n == 1 then
    for k = 0, fanout - 1 do
      local spawned = slot * fanout + k
      redis.call('ZADD', KEYS[8], spawned, string.format('%d', spawned))
    end
    added = added + 1
    if slot + 1 > newhwm then newhwm = slot + 1 end
    touched[bucket] = true
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[1], 'done', added)
  if newhwm > hwm then redis.call('HSET', KEYS[1], 'hwm', string.format('%d', newhwm)) end
  local keys = {KEYS[1], KEYS[6]}
  for b, _ in pairs(touched) do
    keys[#keys + 1] = prefix .. b
    redis.call('ZADD', KEYS[6], b, b)
  end
  for i = 1, #keys, 1000 do
    redis.call('SADD', KEYS[2], unpack(keys, i, math.min(i + 999, #keys)))
  end
end
local gone = 0
if ARGV[3] ~= '' and redis.call('HGET', KEYS[3], 'unit') == ARGV[4] then
  local slots = {}
  for i = 6, #ARGV, 2 do slots[#slots + 1] = ARGV[i] end
  for i = 1, #slots, 1000 do
    redis.call('SREM', KEYS[4], unpack(slots, i, math.min(i + 999, #slots)))
  end
  if redis.call('SCARD', KEYS[4]) == 0 then
    redis.call('DEL', KEYS[3], KEYS[4])
    redis.call('ZREM', KEYS[5], ARGV[3])
    gone = 1
  end
end
redis.call('SET', KEYS[7], cjson.encode({out, gone}), 'EX', OP_TTL)
return {out, gone}
