-- Takes a key's pending changes for the database (see use.lua), under a
-- lease: another gateway takes them again only once the lease is over
-- (the taker died before acknowledging), and then the same changes, with
-- the same token, which the database write recognises (ack.lua).
--
-- KEYS[1] the key's hash, KEYS[2] the set of keys with pending changes
-- ARGV    the key id, the lease in ms
--
-- Returns {} when there is nothing to write, {"busy"} when another
-- gateway holds the lease, else {"flush", decrements, refill time,
-- lastRefillAt before it ("" for NULL), remaining after it, requestCount,
-- lastRequest, token, updatedAt} ("" for what does not change). The token
-- numbers the key's writes (tk, counted here, never below what the
-- database recorded when the hash was seeded): the database records the
-- last it applied, and applies each once.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h, id, lease = KEYS[1], ARGV[1], tonumber(ARGV[2])
local f = {}
local raw = redis.call('HGETALL', h)
for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
if raw[1] == nil then
  redis.call('ZREM', KEYS[2], id)
  return {}
end
if f.fu == nil then
  if f.pn == nil and f.pr == nil and f.prc == nil and f.plr == nil and f.pu == nil then
    redis.call('ZREM', KEYS[2], id)
    return {}
  end
  local token = redis.call('HINCRBY', h, 'tk', 1)
  local ff = ''
  if f.pf ~= nil and f.pf ~= '-' then ff = f.pf end
  redis.call('HSET', h, 'fn', f.pn or 0, 'fr', f.pr or '', 'ff', ff, 'fa', f.pa or '',
    'frc', f.prc or '', 'flr', f.plr or '', 'fu', token, 'fw', f.pu or now)
  redis.call('HDEL', h, 'pn', 'pr', 'pa', 'prc', 'plr', 'pu')
  f = {}
  raw = redis.call('HGETALL', h)
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
elseif (tonumber(f.fl) or 0) > now then
  return {'busy'}
end
redis.call('HSET', h, 'fl', now + lease)
redis.call('ZADD', KEYS[2], now + lease, id)
return {'flush', f.fn, f.fr, f.ff, f.fa, f.frc, f.flr, f.fu, f.fw or now}
