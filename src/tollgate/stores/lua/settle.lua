-- settle.lua: swap one request's reservation for its actual usage on every claimed counter, and append its
-- ledger entry to the outbox stream, in one atomic step (docs/budgets.md).
--
-- KEYS: per claim, 3 keys (counter hash, reservations sorted set, index set), then the outbox stream last.
-- ARGV[1] now, ARGV[2] reservation member ("" when none), ARGV[3] reserved tokens, ARGV[4] reserved micros,
-- ARGV[5] actual tokens, ARGV[6] actual micros, ARGV[7] request id, ARGV[8] ledger payload; then per claim
-- 3 values: scope value, expires_at, reserve ("1" when the claim held the reservation).
-- A reservation that already expired was purged (its hold given back) and is not found by ZREM: it is not
-- subtracted a second time, while the actual usage is still charged.

local now = ARGV[1]
local member = ARGV[2]
local n = (#KEYS - 1) / 3

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

-- Redis does not roll a script back when a command fails midway, so every key's type is checked before the first
-- write: a script either fails before writing or writes everything.
local function wrong_type(key, kind)
  local t = redis.call('TYPE', key)['ok']
  return t ~= 'none' and t ~= kind
end

if wrong_type(KEYS[#KEYS], 'stream') then
  return redis.error_reply('WRONGTYPE the outbox key is not a stream')
end
for i = 1, n do
  if wrong_type(KEYS[3 * i - 2], 'hash') or wrong_type(KEYS[3 * i - 1], 'zset') or wrong_type(KEYS[3 * i], 'set') then
    return redis.error_reply('WRONGTYPE a counter key has the wrong type')
  end
end

-- The outbox entry first: of all writes it is the one most likely to be refused (memory), and nothing is written yet.
redis.call('XADD', KEYS[#KEYS], '*', 'request_id', ARGV[7], 'payload', ARGV[8])

for i = 1, n do
  local counter, holds, index = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local a = 8 + 3 * (i - 1)
  local expires = ARGV[a + 2]
  purge(counter, holds)
  if member ~= '' and ARGV[a + 3] == '1' and redis.call('ZREM', holds, member) == 1 then
    redis.call('HINCRBY', counter, 'rt', int(-tonumber(ARGV[3])))
    redis.call('HINCRBY', counter, 'rm', int(-tonumber(ARGV[4])))
  end
  redis.call('HINCRBY', counter, 'ut', ARGV[5])
  redis.call('HINCRBY', counter, 'um', ARGV[6])
  redis.call('EXPIREAT', counter, expires)
  redis.call('SADD', index, ARGV[a + 1])
  redis.call('EXPIREAT', index, expires)
end

return n
