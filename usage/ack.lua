-- Acknowledges a flush (flush.lua) that reached the database.
--
-- KEYS[1] the key's hash, KEYS[2] the set of keys with pending changes
-- ARGV    the key id, the flush's token, the row's lastRefillAt after it
--         (epoch ms, "" for NULL, "?" when unknown)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h, id, token = KEYS[1], ARGV[1], ARGV[2]
if redis.call('HGET', h, 'fu') ~= token then
  -- Not this hash's write (the hash was lost and seeded anew meanwhile):
  -- what this one has pending must not wait for that write's lease.
  if redis.call('HEXISTS', h, 'fu') == 0 and
      (redis.call('HEXISTS', h, 'pu') == 1 or redis.call('HEXISTS', h, 'pn') == 1) then
    redis.call('ZADD', KEYS[2], now, id)
  end
  return 0
end
redis.call('HDEL', h, 'fn', 'fr', 'ff', 'fa', 'frc', 'flr', 'fu', 'fw', 'fl')
redis.call('HSET', h, 'lt', token)
if ARGV[3] ~= '?' then
  redis.call('HSET', h, 'pf', ARGV[3] == '' and '-' or ARGV[3])
end
if redis.call('HEXISTS', h, 'pu') == 1 or redis.call('HEXISTS', h, 'pn') == 1 then
  redis.call('ZADD', KEYS[2], now, id)
else
  redis.call('ZREM', KEYS[2], id)
end
return 1
