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

-- The held amount of the reservations that expired (the "|<tokens>|<micros>" tail of each member).
local function sum_held(members)
  local t, m = 0, 0
  for _, held in ipairs(members) do
    local a, b = string.match(held, '|(%d+)|(%d+)$')
    t = t + tonumber(a)
    m = m + tonumber(b)
  end
  return t, m
end

-- Redis does not roll a script back when a command fails midway, so every key is read before the first write: a key
-- of the wrong type fails its read (ZRANGEBYSCORE, HLEN; TYPE for an index set that is about to be written), and the
-- outbox is written first (a stream of the wrong type fails XADD); the script either fails before writing or writes
-- everything.
local expired, fresh = {}, {}
for i = 1, n do
  local counter, holds, index = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local gone = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  local gone_t, gone_m = sum_held(gone)
  expired[i] = {#gone, gone_t, gone_m}
  -- A new counter is created with its expiry and its index entry; an existing one already has both.
  fresh[i] = redis.call('HLEN', counter) == 0
  if fresh[i] then
    local kind = redis.call('TYPE', index)['ok']
    if kind ~= 'none' and kind ~= 'set' then
      return redis.error_reply('WRONGTYPE a counter key has the wrong type')
    end
  end
end

-- The outbox entry first: of all writes it is the one most likely to be refused (memory), and nothing is written yet.
redis.call('XADD', KEYS[#KEYS], '*', 'request_id', ARGV[7], 'payload', ARGV[8])

for i = 1, n do
  local counter, holds, index = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local a = 8 + 3 * (i - 1)
  local expires = ARGV[a + 2]
  local gone, gone_t, gone_m = expired[i][1], expired[i][2], expired[i][3]
  if gone > 0 then
    redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
  end
  -- A reservation that expired was purged above and is not found by ZREM: its hold is not given back twice.
  local released = member ~= '' and ARGV[a + 3] == '1' and redis.call('ZREM', holds, member) == 1
  if released or gone > 0 then
    local t = released and tonumber(ARGV[3]) or 0
    local m = released and tonumber(ARGV[4]) or 0
    redis.call('HINCRBY', counter, 'rt', int(-t - gone_t))
    redis.call('HINCRBY', counter, 'rm', int(-m - gone_m))
  end
  redis.call('HINCRBY', counter, 'ut', ARGV[5])
  redis.call('HINCRBY', counter, 'um', ARGV[6])
  if fresh[i] then
    redis.call('EXPIREAT', counter, expires)
    redis.call('SADD', index, ARGV[a + 1])
    redis.call('EXPIREAT', index, expires)
  end
end

return n
