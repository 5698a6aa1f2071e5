-- One use of an API key, decided atomically in Redis, as Rules.Plan
-- decides it (rules.go; the tests run both on the same rows).
--
-- KEYS[1]  the key's hash: the row's usage columns, and what is pending
--          for the database
-- KEYS[2]  the sorted set of keys with pending changes (score: when to
--          flush them)
-- KEYS[3]  the generation: raised when the gateways may have missed a
--          change to any row (a listener reconnected); a hash seeded in
--          another generation is read from its row again
-- ARGV     family (0 current, 1 spare429, 2 legacy), global rate limit off
--          ("1"), seed ("1": the row follows; "2": the row follows, to be
--          taken even if it looks older than the last write), the key id,
--          the hash's TTL in ms, then the row: remaining, refillInterval,
--          refillAmount, lastRefillAt, createdAt, rateLimitOff, window,
--          max, requestCount, lastRequest ("" for NULL; dates in epoch
--          ms), the last write token the database applied, and the
--          generation and reseed count the {"seed"} answer gave
--
-- Returns {"seed", generation, reseeds} when the hash must be seeded from
-- the row first (read the row after this answer, then pass both back:
-- changes announced after them make the hash be read again), {"stale",
-- generation, reseeds} when the row given lacks a write of uses that
-- reached the database since, else {code, hasRemaining, remaining,
-- retryAfter, limit, window, left, reset, refillAmount, refillInterval,
-- refillIn}: code 0 allowed, 1 usage exceeded, 2 rate limited, 3 rate
-- limited (401); durations in ms.
--
-- Pending fields, written to the database behind (flush.lua): pn
-- decrements, applied after pr, a refill at that time to pa remaining,
-- compare-and-swapped on the lastRefillAt the database had (pf, "-" for
-- NULL); prc and plr the rate limit's count and lastRequest; pu updatedAt.
-- Fields f* are the same taken for a write not yet acknowledged, fu its
-- token; lt is the last acknowledged token, tk the last given. A seed
-- starts tk at Redis's clock in microseconds at least: above every token
-- an earlier hash of the key gave (it started lower, and gave one per
-- write, each a script that took Redis more than a microsecond), even one
-- still in flight when that hash was lost, which the table the seed read
-- does not show yet. rs counts
-- the changes to the row announced (Reseed), rss the count the hash was
-- seeded at.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local micros = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = KEYS[1]
local family, globalOff, id, ttl = tonumber(ARGV[1]), ARGV[2] == '1', ARGV[4], tonumber(ARGV[5])
local seed, force = ARGV[3] ~= '0', ARGV[3] == '2'

local function num(v)
  if v == nil or v == false or v == '' then return nil end
  return tonumber(v)
end

local gen = redis.call('GET', KEYS[3]) or '0'
local f = {}
local raw = redis.call('HGETALL', h)
for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end

-- A hash that is absent, marked for reseeding (the row changed outside
-- the gateways), of another generation or unreadable is seeded from the
-- row, keeping what is pending for the database.
local reseeds = f.rs or '0'
local usable = raw[1] ~= nil and reseeds == (f.rss or '0') and f.g == gen and num(f.ca) ~= nil
local garbage = {}
for _, k in ipairs({'r', 'ri', 'ra', 'lra', 'w', 'm', 'rc', 'lr', 'pn', 'pa', 'pr', 'prc', 'plr',
    'fn', 'fr', 'fa', 'frc', 'flr', 'fu', 'lt', 'tk'}) do
  if f[k] ~= nil and f[k] ~= '' and tonumber(f[k]) == nil then
    usable = false
    f[k] = nil -- nor is it laid over the row
    table.insert(garbage, k)
  end
end
if not usable then
  if not seed then return {'seed', gen, reseeds} end
  local ap = num(ARGV[16]) or 0
  -- A row read before the last acknowledged write reached it lacks uses
  -- Redis no longer holds: read it again.
  if not force and ap < (num(f.lt) or 0) then return {'stale', gen, reseeds} end
  local landed = f.fu == nil or ap >= num(f.fu)
  -- The row, with what it does not hold yet laid over it as the next
  -- writes will lay it (flush.lua, and the database's statement): what
  -- is pending, and what was taken for a write that has not reached the
  -- row (its token is not the row's updatedAt).
  local dec = num(f.pn) or 0
  local rAt, rFrom, rAfter = f.pr, f.pf, num(f.pa)
  local rc, lr = f.prc, f.plr
  local pfRowEarly = ARGV[9] == '' and '-' or ARGV[9]
  if f.fu ~= nil and landed and rAt ~= nil then
    -- The write in flight is in the row; its acknowledgement will make
    -- the row's lastRefillAt the one the pending refill swaps from.
    rFrom = pfRowEarly
  end
  if not landed then
    if rAt == nil then
      dec = dec + (num(f.fn) or 0)
      if f.fr ~= nil and f.fr ~= '' then
        rAt, rFrom, rAfter = f.fr, (f.ff == nil or f.ff == '') and '-' or f.ff, num(f.fa)
      end
    end
    if rc == nil and f.frc ~= '' then rc = f.frc end
    if lr == nil and f.flr ~= '' then lr = f.flr end
  end
  local r, lra = num(ARGV[6]), ARGV[9]
  local pfRow = ARGV[9] == '' and '-' or ARGV[9]
  if r ~= nil then
    if rAt ~= nil and rFrom == pfRow then
      r, lra = math.max((rAfter or 0) - dec, 0), rAt
    elseif rAt ~= nil then
      r = math.max(r - dec - 1, 0)
    else
      r = math.max(r - dec, 0)
    end
  end
  local row = {'ri', ARGV[7], 'lra', lra, 'ca', ARGV[10], 'off', ARGV[11], 'rc', rc or ARGV[14],
    'g', ARGV[17], 'rss', ARGV[18], 'tk', math.max(num(f.tk) or 0, ap, micros)}
  if f.pr == nil then table.insert(row, 'pf'); table.insert(row, pfRow) end
  redis.call('HDEL', h, 'r', 'ra', 'w', 'm', 'lr', unpack(garbage))
  if r ~= nil then table.insert(row, 'r'); table.insert(row, r) end
  for _, p in ipairs({{'ra', ARGV[8]}, {'w', ARGV[12]}, {'m', ARGV[13]}, {'lr', lr or ARGV[15]}}) do
    if p[2] ~= '' then table.insert(row, p[1]); table.insert(row, p[2]) end
  end
  redis.call('HSET', h, unpack(row))
  raw = redis.call('HGETALL', h)
  f = {}
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
end

local remaining, hasRemaining = num(f.r), f.r ~= nil
local ri, ra = num(f.ri) or 0, num(f.ra)
local lastRefill = num(f.lra) or num(f.ca)
local refills = ri ~= 0 and ra ~= nil and ra ~= 0
local code, retry = 0, 0
local refillIn = 0
-- What the answer says of refills: only of a quota that refills.
local rfa, rfi = 0, 0
if hasRemaining and refills then rfa, rfi = ra, ri end
local set = {}

if hasRemaining then
  if remaining == 0 and ra == nil then
    code = 1
  elseif refills and now - lastRefill > ri then
    remaining, lastRefill = ra - 1, now
    table.insert(set, 'r'); table.insert(set, remaining)
    table.insert(set, 'lra'); table.insert(set, now)
    table.insert(set, 'pr'); table.insert(set, now)
    table.insert(set, 'pa'); table.insert(set, remaining)
    table.insert(set, 'pn'); table.insert(set, 0)
  elseif remaining > 0 then
    remaining = remaining - 1
    table.insert(set, 'r'); table.insert(set, remaining)
    table.insert(set, 'pn'); table.insert(set, (num(f.pn) or 0) + 1)
  else
    code = 1
  end
  if refills then refillIn = math.max(0, lastRefill + ri - now) end
  if code ~= 0 then
    return {code, 1, remaining, refillIn, 0, 0, 0, 0, rfa, rfi, refillIn}
  end
end

local limit, window, left, reset = 0, 0, 0, 0
local w, m, rc, lr = num(f.w), num(f.m), num(f.rc) or 0, num(f.lr)
if globalOff or f.off == '1' then
  table.insert(set, 'lr'); table.insert(set, now)
  table.insert(set, 'plr'); table.insert(set, now)
elseif w ~= nil and m ~= nil then
  limit, window = m, w
  local newCount
  if lr == nil or now - lr > w then
    newCount = 1
  elseif rc >= m then
    retry = w - (now - lr)
    if family == 0 then
      -- The quota was claimed before the rate limit was read.
      if #set > 0 then
        redis.call('HSET', h, unpack(set))
        redis.call('ZADD', KEYS[2], 'NX', now, id)
      end
      code = 2
    elseif family == 1 then
      code, remaining = 2, num(f.r)
    else
      code, remaining = 3, num(f.r)
    end
    redis.call('PEXPIRE', h, ttl)
    if family ~= 0 and refills then
      refillIn = math.max(0, (num(f.lra) or num(f.ca)) + ri - now)
    end
    return {code, hasRemaining and 1 or 0, remaining or 0, retry, limit, window, 0, retry, rfa, rfi, refillIn}
  else
    newCount = rc + 1
  end
  table.insert(set, 'rc'); table.insert(set, newCount)
  table.insert(set, 'lr'); table.insert(set, now)
  table.insert(set, 'prc'); table.insert(set, newCount)
  table.insert(set, 'plr'); table.insert(set, now)
  left, reset = m - newCount, w
end
table.insert(set, 'pu'); table.insert(set, now)
redis.call('HSET', h, unpack(set))
redis.call('ZADD', KEYS[2], 'NX', now, id)
redis.call('PEXPIRE', h, ttl)
return {0, hasRemaining and 1 or 0, remaining or 0, 0, limit, window, left, reset, rfa, rfi, refillIn}
