-- reserve.lua: hold one request's estimate on every claimed counter, or on none (docs/budgets.md).
--
-- KEYS: per claim, 3 keys: the counter hash, its reservations sorted set, its budget/window index set.
-- ARGV[1] now, ARGV[2] reservation member ("<id>|<tokens>|<micros>"), ARGV[3] tokens, ARGV[4] micros,
-- ARGV[5] deadline; then per claim 6 values: scope value, expires_at, cap tokens (-1: none), cap micros (-1: none),
-- reserve ("1": hold the estimate; "0": post mode), blocking ("1": hard budget).
-- Counter fields: ut/um used tokens/micros, rt/rm reserved tokens/micros, b would-have-blocked count.
-- Returns {refused, then 5 integers per claim: ut, um, rt, rm, b}; refused is the 1-based index of the first hard
-- claim without room (then nothing but the purges was written) or 0. The rule mirrors Claim.admits in
-- tollgate/budgets/model.py.

local now = ARGV[1]
local member = ARGV[2]
local tokens = tonumber(ARGV[3])
local micros = tonumber(ARGV[4])
local deadline = ARGV[5]
local n = #KEYS / 3

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

local function fits(held, amount, cap)
  return cap < 0 or (held < cap and held + amount <= cap)
end

-- Redis does not roll a script back when a command fails midway, so every key is read before the first write: a key
-- of the wrong type fails its read (ZRANGEBYSCORE, HMGET; TYPE for an index set that is about to be written), and the
-- script either fails before writing or writes everything.
local states, expired, fresh, fit = {}, {}, {}, {}
local refused = 0
for i = 1, n do
  local counter, holds, index = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local a = 5 + 6 * (i - 1)
  local gone = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  local gone_t, gone_m = sum_held(gone)
  expired[i] = {#gone, gone_t, gone_m}
  local v = redis.call('HMGET', counter, 'ut', 'um', 'rt', 'rm', 'b')
  -- A new counter is created with its expiry and its index entry; an existing one already has both.
  fresh[i] = not (v[1] or v[2] or v[3] or v[4] or v[5])
  if fresh[i] then
    local kind = redis.call('TYPE', index)['ok']
    if kind ~= 'none' and kind ~= 'set' then
      return redis.error_reply('WRONGTYPE a counter key has the wrong type')
    end
  end
  local s = {tonumber(v[1]) or 0, tonumber(v[2]) or 0, (tonumber(v[3]) or 0) - gone_t, (tonumber(v[4]) or 0) - gone_m,
    tonumber(v[5]) or 0}
  states[i] = s
  local reserve = ARGV[a + 5] == '1'
  local t = reserve and tokens or 0
  local m = reserve and micros or 0
  fit[i] = fits(s[1] + s[3], t, tonumber(ARGV[a + 3])) and fits(s[2] + s[4], m, tonumber(ARGV[a + 4]))
  if refused == 0 and not fit[i] and ARGV[a + 6] == '1' then
    refused = i
  end
end

for i = 1, n do
  local counter, holds, index = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local a = 5 + 6 * (i - 1)
  local expires = ARGV[a + 2]
  local gone, gone_t, gone_m = expired[i][1], expired[i][2], expired[i][3]
  local hold = refused == 0 and ARGV[a + 5] == '1'
  local wrote = false
  if gone > 0 then
    redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
  end
  if hold then
    redis.call('ZADD', holds, deadline, member)
    redis.call('EXPIREAT', holds, expires)
    states[i][3] = states[i][3] + tokens
    states[i][4] = states[i][4] + micros
  end
  if hold and gone == 0 then
    redis.call('HINCRBY', counter, 'rt', ARGV[3])
    redis.call('HINCRBY', counter, 'rm', ARGV[4])
    wrote = true
  elseif gone > 0 then
    redis.call('HINCRBY', counter, 'rt', int((hold and tokens or 0) - gone_t))
    redis.call('HINCRBY', counter, 'rm', int((hold and micros or 0) - gone_m))
    wrote = true
  end
  if refused == 0 and not fit[i] then
    redis.call('HINCRBY', counter, 'b', 1)
    states[i][5] = states[i][5] + 1
    wrote = true
  end
  if wrote and fresh[i] then
    redis.call('EXPIREAT', counter, expires)
    redis.call('SADD', index, ARGV[a + 1])
    redis.call('EXPIREAT', index, expires)
  end
end

local out = {refused}
for i = 1, n do
  for j = 1, 5 do
    out[#out + 1] = states[i][j]
  end
end
return out
