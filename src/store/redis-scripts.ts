// Lua scripts of the Redis store (src/store/redis.ts). Each touches keys of ONE cluster slot only, all
// passed in KEYS (hash tags {p<N>} or {v:<vehicleId>} keep them together), so they run unchanged on a
// standalone server and on Redis Cluster. Values cross the Lua boundary as strings: Lua numbers would
// be formatted with 14 significant digits, and a Lua number returned to Redis is truncated to an integer.
// Write scripts carry the `#!lua` shebang: Redis then refuses them up front when it is out of memory,
// instead of failing half-way through, so a script's writes are all-or-nothing for that failure too.
import { createHash } from 'node:crypto';

export interface RedisScript {
  readonly name: string;
  readonly lua: string;
  readonly sha: string;
}

function script(name: string, lua: string): RedisScript {
  const body = lua.trim() + '\n';
  return { name, lua: body, sha: createHash('sha1').update(body).digest('hex') };
}

/**
 * Appends the uplink of the vehicles of one partition, each vehicle all-or-nothing: its first seq must
 * be its last consumed + 1 and its seqs contiguous, else it is refused and nothing of it is written.
 * A vehicle whose writes carry a fence below the one in the fence hash (a later session connected)
 * is refused as fenced. A record goes to the partition stream (XADD *, fields v, s, r) and its entry
 * id into the vehicle's history (a sorted set scored by seq); the seq of a hole is consumed without a
 * record.
 * KEYS[1] seq hash, KEYS[2] partition stream, KEYS[3] fence hash, then per vehicle i: KEYS[2+2i]
 * history zset, KEYS[3+2i] latest hash.
 * ARGV[1] vehicle count, then per vehicle: id, fence ('' for none), n (writes), m (latest fields),
 * n × (seq, record JSON or '' for a hole), m × (field, value JSON).
 * Returns the refused vehicles as a flat list: id, last consumed seq or 'fenced', …
 */
export const APPEND_UPLINK = script(
  'appendUplink',
  `
#!lua
local seqKey, streamKey, fenceKey = KEYS[1], KEYS[2], KEYS[3]
-- Type checks first: a wrong type fails the call before anything is written.
local function check(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. t .. ', expected a ' .. want)
  end
  return nil
end
local err = check(seqKey, 'hash') or check(streamKey, 'stream') or check(fenceKey, 'hash')
if err then return err end
for i = 4, #KEYS, 2 do
  err = check(KEYS[i], 'zset') or check(KEYS[i + 1], 'hash')
  if err then return err end
end

local out = {}
local a = 2
for i = 1, tonumber(ARGV[1]) do
  local vid = ARGV[a]
  local fence = ARGV[a + 1]
  local n = tonumber(ARGV[a + 2])
  local m = tonumber(ARGV[a + 3])
  a = a + 4
  local hist, latest = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local lastStr = redis.call('HGET', seqKey, vid) or '0'
  local last = tonumber(lastStr)
  local ok = n > 0
  if fence ~= '' then
    local held = redis.call('HGET', fenceKey, vid)
    if held and tonumber(held) > tonumber(fence) then
      ok = false
      lastStr = 'fenced'
    end
  end
  for k = 0, n - 1 do
    if not ok then break end
    if tonumber(ARGV[a + 2 * k]) ~= last + 1 + k then
      ok = false
      break
    end
  end
  if ok then
    for k = 0, n - 1 do
      local s, r = ARGV[a + 2 * k], ARGV[a + 2 * k + 1]
      if r ~= '' then
        local id = redis.call('XADD', streamKey, '*', 'v', vid, 's', s, 'r', r)
        redis.call('ZADD', hist, s, id)
      end
    end
    if m > 0 then
      local f = {}
      local p = a + 2 * n
      for k = 0, 2 * m - 1 do f[k + 1] = ARGV[p + k] end
      redis.call('HSET', latest, unpack(f))
    end
    redis.call('HSET', seqKey, vid, ARGV[a + 2 * (n - 1)])
  else
    out[#out + 1] = vid
    out[#out + 1] = lastStr
  end
  a = a + 2 * n + 2 * m
end
return out
`,
);

/**
 * A vehicle's row. KEYS: seen hash, seq hash, latest hash (all of its partition). ARGV[1] vehicle id.
 * Returns {} when the vehicle was never seen, else {'first:last', lastSeq, {field, value JSON, …}}.
 */
export const GET_VEHICLE = script(
  'getVehicle',
  `
#!lua flags=no-writes
local seen = redis.call('HGET', KEYS[1], ARGV[1])
if not seen then return {} end
return {seen, redis.call('HGET', KEYS[2], ARGV[1]) or '0', redis.call('HGETALL', KEYS[3])}
`,
);

/**
 * markSeen: as GET_VEHICLE, after keeping first-seen and setting last-seen to ARGV[2]; with a fence
 * ARGV[3] (else ''), raises the vehicle's fence in KEYS[4] to it. The reply's 4th element is the
 * vehicle's fence after that ('' when it has none).
 */
export const MARK_SEEN = script(
  'markSeen',
  `
#!lua
local vid, at, fence = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('HGET', KEYS[1], vid)
local first = at
if cur then first = string.match(cur, '^([^:]*)') end
local seen = first .. ':' .. at
redis.call('HSET', KEYS[1], vid, seen)
local held = redis.call('HGET', KEYS[4], vid)
if fence ~= '' and (not held or tonumber(held) < tonumber(fence)) then
  redis.call('HSET', KEYS[4], vid, fence)
  held = fence
end
return {seen, redis.call('HGET', KEYS[2], vid) or '0', redis.call('HGETALL', KEYS[3]), held or ''}
`,
);

/**
 * Creates a command with the vehicle's next downlink seq. KEYS: seq counter, command hash, open zset.
 * ARGV: id, vehicleId, name, has params ('1'/'0'), params, createdAt, expiresAt, has traceparent,
 * traceparent. Returns the seq; an error when the command hash exists.
 */
export const CREATE_COMMAND = script(
  'createCommand',
  `
#!lua
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('EXISTS command ' .. ARGV[1] .. ' already exists')
end
local seq = redis.call('INCR', KEYS[1])
local f = {'id', ARGV[1], 'vehicleId', ARGV[2], 'seq', tostring(seq), 'name', ARGV[3],
  'createdAt', ARGV[6], 'expiresAt', ARGV[7], 'status', 'pending', 'updatedAt', ARGV[6]}
if ARGV[4] == '1' then
  f[#f + 1] = 'params'
  f[#f + 1] = ARGV[5]
end
if ARGV[8] == '1' then
  f[#f + 1] = 'traceparent'
  f[#f + 1] = ARGV[9]
end
redis.call('HSET', KEYS[2], unpack(f))
redis.call('ZADD', KEYS[3], seq, ARGV[1])
return seq
`,
);

/**
 * Compare-and-set of a command's status. KEYS: command hash, open zset. ARGV: id, to, now, has result
 * ('1'/'0'), result JSON, from statuses…. Returns the updated hash (flat), or nil when the command is
 * missing or its status is not one of `from` (nothing changed).
 */
export const TRANSITION_COMMAND = script(
  'transitionCommand',
  `
#!lua
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return false end
local match = false
for i = 6, #ARGV do
  if ARGV[i] == st then
    match = true
    break
  end
end
if not match then return false end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updatedAt', ARGV[3])
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'result', ARGV[5]) end
if ARGV[2] == 'pending' or ARGV[2] == 'delivered' then
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'seq'), ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
`,
);

/**
 * Expires one command if it is open and past EXPIRES_AT. KEYS: command hash, open zset. ARGV: id, now.
 * Returns the updated hash (flat), or 'missing', 'final' (already final) or 'open' (not due yet).
 */
export const EXPIRE_COMMAND = script(
  'expireCommand',
  `
#!lua
local h = redis.call('HMGET', KEYS[1], 'status', 'expiresAt')
if not h[1] then return 'missing' end
if h[1] ~= 'pending' and h[1] ~= 'delivered' then return 'final' end
if tonumber(h[2]) > tonumber(ARGV[2]) then return 'open' end
redis.call('HSET', KEYS[1], 'status', 'expired', 'updatedAt', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HGETALL', KEYS[1])
`,
);

/**
 * A vehicle's records with seq > ARGV[1], at most ARGV[2], in seq order: the history's entry ids looked
 * up in the partition stream (an id whose entry is gone is skipped). KEYS: history zset, partition
 * stream. Returns the records' JSON.
 */
export const LIST_UPLINK = script(
  'listUplink',
  `
#!lua flags=no-writes
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
local out = {}
for i = 1, #ids do
  local e = redis.call('XRANGE', KEYS[2], ids[i], ids[i])
  if e[1] then
    local f = e[1][2]
    for j = 1, #f, 2 do
      if f[j] == 'r' then
        out[#out + 1] = f[j + 1]
        break
      end
    end
  end
end
return out
`,
);

/**
 * Deletes the oldest entries of a partition stream and their ids from the vehicles' histories.
 * KEYS[1] partition stream, KEYS[2…] history zsets. ARGV[1] MINID (entries below it are trimmed), then
 * per history key: count, entry ids…. Returns {trimmed, removed from histories}.
 */
export const PRUNE_UPLINK = script(
  'pruneUplink',
  `
#!lua
local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
local removed = 0
local a = 2
for i = 2, #KEYS do
  local c = tonumber(ARGV[a])
  a = a + 1
  local k = 0
  while k < c do
    local ids = {}
    local j = 0
    while j < 500 and k < c do
      ids[j + 1] = ARGV[a + k]
      j = j + 1
      k = k + 1
    end
    removed = removed + redis.call('ZREM', KEYS[i], unpack(ids))
  end
  a = a + c
end
return {trimmed, removed}
`,
);

/** Registers a device unless a non-revoked one has the id. KEYS: device hash. ARGV: secretHash, scopes JSON, createdAt. */
export const ADD_DEVICE = script(
  'addDevice',
  `
#!lua
if redis.call('EXISTS', KEYS[1]) == 1 and not redis.call('HGET', KEYS[1], 'revokedAt') then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'secretHash', ARGV[1], 'scopes', ARGV[2], 'createdAt', ARGV[3])
return 1
`,
);

/** Revokes a device that exists and is not revoked. KEYS: device hash. ARGV: at. Returns 1 or 0. */
export const REVOKE_DEVICE = script(
  'revokeDevice',
  `
#!lua
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'revokedAt') then
  return 0
end
redis.call('HSET', KEYS[1], 'revokedAt', ARGV[1])
return 1
`,
);

export const ALL_SCRIPTS: readonly RedisScript[] = [
  APPEND_UPLINK,
  GET_VEHICLE,
  MARK_SEEN,
  CREATE_COMMAND,
  TRANSITION_COMMAND,
  EXPIRE_COMMAND,
  LIST_UPLINK,
  PRUNE_UPLINK,
  ADD_DEVICE,
  REVOKE_DEVICE,
];
