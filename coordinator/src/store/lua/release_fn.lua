local function release(P, B, id)
  local lk = P .. 'l:' .. id
  local sk = P .. 'ls:' .. id
  local h = redis.call('HGETALL', lk)
  if #h == 0 then return nil end
  local f = {}
  for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
  local slots = redis.call('SMEMBERS', sk)
  local rprefix = P .. 'r:' .. f.unit .. ':'
  local q = P .. 'q:' .. f.unit
  local hwm = tonumber(redis.call('HGET', P .. 'u:' .. f.unit, 'hwm') or '0')
  local n = 0
  for _, s in ipairs(slots) do
    local slot = tonumber(s)
    if slot >= hwm or redis.call('HEXISTS', rprefix .. string.format('%d', math.floor(slot / B)), s) == 0 then
      redis.call('ZADD', q, slot, s)
      n = n + 1
    end
  end
  redis.call('DEL', lk, sk)
  redis.call('ZREM', P .. 'dl', id)
  return {id, f.model, f.mode, f.worker, f.deadline, slots, n}
end
