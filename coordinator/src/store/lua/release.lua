local r = release(ARGV[1], tonumber(ARGV[2]), ARGV[3])
if not r then return -1 end
return r[7]
