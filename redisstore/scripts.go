package redisstore

import "github.com/redis/go-redis/v9"

// Each backend is one hash, so that every script touches one key (one slot in a Redis Cluster). Its fields are
// "rest:<model>" (a record as JSON; model "" is the whole backend) and "probe:<model>" ("<until> <owner>").
// The hash expires when the last of its rests and probes ends. Times are the Client's, in Unix nanoseconds (Lua
// compares them as doubles, to within a microsecond), and expiry is relative, so the clocks of Redis and the
// fleet need not agree.

// saveScript writes a record unless a rest in force ends later or the record is news of a recovery (see
// failover.Store.Save), and forgets fields that have ended.
// KEYS[1]: the hash. ARGV: field, record, until, now, the milliseconds from now to until, the record's kind.
var saveScript = redis.NewScript(`
local maxFields = 1024
local key, field, record = KEYS[1], ARGV[1], ARGV[2]
local untl, now, ttl, kind = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
if untl <= now or ttl <= 0 then return 0 end
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  local f, v, ends, curKind = fields[i], fields[i + 1], nil, nil
  if string.sub(f, 1, 5) == 'rest:' then
    local ok, r = pcall(cjson.decode, v)
    if ok and type(r) == 'table' then ends, curKind = tonumber(r['until']), r['kind'] end
  else
    ends = tonumber(string.match(v, '^(%d+) '))
  end
  if ends == nil or ends <= now then
    redis.call('HDEL', key, f)
  elseif f == field and curKind ~= 'recovered' and (kind == 'recovered' or ends > untl) then
    return 0
  end
end
-- A bound on a backend's fields: a caller asking for made-up models (each answered 404) must not grow the hash
-- that every replica loads once a second. Past it, new models go unshared; each replica learns them itself.
if redis.call('HEXISTS', key, field) == 0 and redis.call('HLEN', key) >= maxFields then return 0 end
redis.call('HSET', key, field, record)
if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
return 1
`)

// claimScript makes owner the probe of the given models unless one of them rests (its fields and records are
// returned after a 0) or another owner's probe holds. KEYS[1]: the hash. ARGV: now, ttl (ms), owner, models….
var claimScript = redis.NewScript(`
local key, now, ttl, owner = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local resting = {0}
for i = 4, #ARGV do
  local f = 'rest:' .. ARGV[i]
  local v = redis.call('HGET', key, f)
  if v then
    local ok, r = pcall(cjson.decode, v)
    if ok and type(r) == 'table' and tonumber(r['until']) and tonumber(r['until']) > now then
      table.insert(resting, f)
      table.insert(resting, v)
    end
  end
end
if #resting > 1 then return resting end
for i = 4, #ARGV do
  local v = redis.call('HGET', key, 'probe:' .. ARGV[i])
  if v then
    local ends, who = string.match(v, '^(%d+) (.*)$')
    if who ~= owner and tonumber(ends) and tonumber(ends) > now then return {0} end
  end
end
local probe = string.format('%.0f', now + ttl * 1000000) .. ' ' .. owner
for i = 4, #ARGV do redis.call('HSET', key, 'probe:' .. ARGV[i], probe) end
if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
return {1}
`)

// releaseScript ends the probes of the given models that owner holds. KEYS[1]: the hash. ARGV: owner, models….
var releaseScript = redis.NewScript(`
for i = 2, #ARGV do
  local f = 'probe:' .. ARGV[i]
  local v = redis.call('HGET', KEYS[1], f)
  if v and string.match(v, '^%d+ (.*)$') == ARGV[1] then redis.call('HDEL', KEYS[1], f) end
end
return 0
`)
