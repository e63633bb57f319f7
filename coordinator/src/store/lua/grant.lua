local prev = redis.call('GET', KEYS[7])
if prev then return cjson.decode(prev) end
local total = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[4]) == 1 then
  return redis.error_reply('lease id ' .. ARGV[3] .. ' is already in use; lease ids must be unique')
end
local prefix = ARGV[9]
local B = tonumber(ARGV[10])
local hwm = tonumber(redis.call('HGET', KEYS[1], 'hwm') or '0')
local function recorded(slot)
  if slot >= hwm then return false end
  return redis.call('HEXISTS', prefix .. string.format('%d', math.floor(slot / B)),
    string.format('%d', slot)) == 1
end
local got = {}
while #got < max do
  local popped = redis.call('ZPOPMIN', KEYS[2], max - #got)
  if #popped == 0 then break end
  for i = 1, #popped, 2 do
    local slot = tonumber(popped[i])
    if slot < total and not recorded(slot) then got[#got + 1] = slot end
  end
end
local cursor = tonumber(redis.call('HGET', KEYS[1], 'cursor') or '0')
local start = cursor
local cell = math.max(1, tonumber(ARGV[11] or '1'))
local queue_only = ARGV[12] == '1'
while not queue_only and cursor < total do
  local stop = math.min(cursor - (cursor % cell) + cell, total)
  if #got + (stop - cursor) > max then break end
  while cursor < stop do
    if not recorded(cursor) then got[#got + 1] = cursor end
    cursor = cursor + 1
  end
end
if cursor ~= start then redis.call('HSET', KEYS[1], 'cursor', string.format('%d', cursor)) end
redis.call('SADD', KEYS[3], KEYS[1], KEYS[2])
if #got > 0 then
  redis.call('HSET', KEYS[4], 'model', ARGV[6], 'mode', ARGV[7], 'unit', ARGV[8],
    'worker', ARGV[4], 'deadline', ARGV[5])
  local members = {}
  for i, slot in ipairs(got) do members[i] = string.format('%d', slot) end
  for i = 1, #members, 1000 do
    redis.call('SADD', KEYS[5], unpack(members, i, math.min(i + 999, #members)))
  end
  redis.call('ZADD', KEYS[6], ARGV[5], ARGV[3])
end
redis.call('SET', KEYS[7], cjson.encode(got), 'EX', OP_TTL)
return got
