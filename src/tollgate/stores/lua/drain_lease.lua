-- drain_lease.lua: the lease that makes one gateway process of a fleet the outbox's drainer (docs/ledger.md).
--
-- KEYS[1] the lease key. ARGV[1] the holder's id, ARGV[2] the lease's time to live in milliseconds, ARGV[3] "1" to
-- take or renew the lease, "0" to give it up. Returns 1 when ARGV[1] holds the lease afterwards, else 0.

if ARGV[3] == '0' then
  if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
  end
  return 0
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
