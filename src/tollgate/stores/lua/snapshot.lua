-- snapshot.lua: read counters for `tollgate budgets status`, purging their expired reservations first.
--
-- KEYS: per counter, 2 keys: the counter hash and its reservations sorted set. ARGV[1] now.
-- Returns 5 integers per counter: ut, um, rt, rm, b.

local now = ARGV[1]

local function int(x)
  return string.format('%d', x)
end

local function purge(counter, holds)
  local expired = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  if #expired == 0 then
    return
  end
  local t, m = 0, 0
  for _, held in ipairs(expired) do
    local a, b = string.match(held, '|(%d+)|(%d+)$')
    t = t + tonumber(a)
    m = m + tonumber(b)
  end
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
  redis.call('HINCRBY', counter, 'rt', int(-t))
  redis.call('HINCRBY', counter, 'rm', int(-m))
end

local out = {}
for i = 1, #KEYS / 2 do
  local counter, holds = KEYS[2 * i - 1], KEYS[2 * i]
  purge(counter, holds)
  local v = redis.call('HMGET', counter, 'ut', 'um', 'rt', 'rm', 'b')
  for j = 1, 5 do
    out[#out + 1] = tonumber(v[j]) or 0
  end
end
return out
