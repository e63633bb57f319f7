-- Opens a provider batch: the slots it answers leave the leases that hold
-- them (a slot no named lease holds, or one recorded meanwhile, is left
-- out) and the record is stored with the slots it kept. An id already open
-- returns the stored record (a retried call changes nothing). Returns
-- {rec, slots, worker, deadline, provider, ids of the leases emptied}.
-- KEYS: batch hash, batch deadlines, keyset, lease deadlines.
-- ARGV: record JSON (without slots), worker, deadline, unit part, bucket
-- prefix, B, sweep prefix, batch id, slots (comma-separated), lease ids...
local function fields(gone)
  local f = redis.call('HMGET', KEYS[1], 'rec', 'slots', 'worker', 'deadline', 'provider')
  f[6] = gone
  return f
end
if redis.call('EXISTS', KEYS[1]) == 1 then return fields({}) end
local p = ARGV[7]
local B = tonumber(ARGV[6])
local leases = {}
for i = 10, #ARGV do
  if redis.call('HGET', p .. 'l:' .. ARGV[i], 'unit') == ARGV[4] then
    leases[#leases + 1] = ARGV[i]
  end
end
local kept = {}
for s in string.gmatch(ARGV[9], '[^,]+') do
  local slot = tonumber(s)
  for _, id in ipairs(leases) do
    if redis.call('SREM', p .. 'ls:' .. id, s) == 1 then
      local bucket = ARGV[5] .. string.format('%d', math.floor(slot / B))
      if redis.call('HEXISTS', bucket, s) == 0 then kept[#kept + 1] = slot end
      break
    end
  end
end
local gone = {}
for _, id in ipairs(leases) do
  if redis.call('SCARD', p .. 'ls:' .. id) == 0 then
    redis.call('DEL', p .. 'l:' .. id, p .. 'ls:' .. id)
    redis.call('ZREM', KEYS[4], id)
    gone[#gone + 1] = id
  end
end
table.sort(kept)
local parts = {}
for i, slot in ipairs(kept) do parts[i] = string.format('%d', slot) end
local slots = table.concat(parts, ',')
if #kept == 0 then return {ARGV[1], '', ARGV[2], ARGV[3], false, gone} end
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'slots', slots, 'worker', ARGV[2],
  'deadline', ARGV[3], 'unit', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[8])
redis.call('SADD', KEYS[3], KEYS[1], KEYS[2])
return fields(gone)
