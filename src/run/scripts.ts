// Every Lua script of jobscope in one registry, as BullMQ keeps its `Scripts`: each program is defined on a connection once
// (ioredis `defineCommand`: EVALSHA, with the script loaded again after a restart) and called through one typed method of
// `scripts(redis)`. Key names come from RedisKeys: a script that builds keys from a prefix is handed that prefix by it.
import type { Redis } from 'ioredis';
import { FAILED_OUTCOMES } from './outcome.ts';

/** The outcomes of failed runs that the run index tells apart (the rest of BullMQ's failed set is 'failed'). */
export const FAILED_KINDS = FAILED_OUTCOMES.filter((o) => o !== 'failed');

// The run index (control/runs.ts): many small reads of many sets in one command. A query over 100 jobs touches hundreds
// of sets, and one command per set would cost more in the client than in Redis. KEYS: the sets (or lists). ARGV[1]: what
// to read, then its arguments.
const MANY = `local op, out = ARGV[1], {}
if op == 'count' then
  for i, k in ipairs(KEYS) do out[i] = redis.call('ZCOUNT', k, ARGV[2], ARGV[3]) end
elseif op == 'look' then
  for i, k in ipairs(KEYS) do
    local top = redis.call('ZREVRANGE', k, 0, 0, 'WITHSCORES')
    out[i] = { redis.call('ZCOUNT', k, ARGV[1 + i], '+inf'), top[1] or '', top[2] or '' }
  end
elseif op == 'oldest' then
  for i, k in ipairs(KEYS) do out[i] = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')[2] or '' end
elseif op == 'newest' then
  for i, k in ipairs(KEYS) do
    local kind = redis.call('TYPE', k)['ok']
    if kind == 'list' then out[i] = redis.call('LRANGE', k, 0, tonumber(ARGV[2]) - 1)
    elseif kind == 'zset' then out[i] = redis.call('ZREVRANGE', k, 0, tonumber(ARGV[2]) - 1)
    else out[i] = {} end
  end
elseif op == 'read' then
  for i, k in ipairs(KEYS) do
    local t, chunk = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
    if t == '' then out[i] = { {}, redis.call('ZREVRANGEBYSCORE', k, ARGV[3], ARGV[2], 'WITHSCORES', 'LIMIT', 0, chunk) }
    else out[i] = { redis.call('ZREVRANGEBYSCORE', k, t, t, 'WITHSCORES'),
      redis.call('ZREVRANGEBYSCORE', k, '(' .. t, ARGV[2], 'WITHSCORES', 'LIMIT', 0, chunk) } end
  end
end
return out`;

// The overview's figures over many jobs in one command, summed in Redis so the answer is a few numbers whatever the number
// of runs: O(log n) counts per set, never a read of the runs. KEYS, per job: its completed set, its failed set, then the
// index sets of its failed runs by outcome (FAILED_KINDS order). ARGV: [1] since 24 h, [2] since 7 days, [3] the first
// hour's start, [4] hours, [5] hour length (ms). Returns { totals (per window: completed, failed, then each kind),
// completed per hour, failed per hour, per job whose last finished run failed: its position, that run's id }.
const TALLY = `local per = 2 + ${FAILED_KINDS.length}
local windows = { ARGV[2], ARGV[1] }
local first, hours, hour = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local totals, done, failed, failing = {}, {}, {}, {}
for i = 1, #windows * per do totals[i] = 0 end
for h = 1, hours do done[h] = 0; failed[h] = 0 end
for j = 0, #KEYS / per - 1 do
  -- The 7 days first: an outcome that did not happen in 7 days is not counted again for 24 h.
  local seen = {}
  for w = 1, #windows do
    local base = (#windows - w) * per
    local ok = redis.call('ZCOUNT', KEYS[j * per + 1], windows[w], '+inf')
    local bad = redis.call('ZCOUNT', KEYS[j * per + 2], windows[w], '+inf')
    totals[base + 1] = totals[base + 1] + ok
    totals[base + 2] = totals[base + 2] + bad
    -- The outcomes of failed runs, only where runs failed (most jobs, most of the time: none).
    if bad > 0 then
      for s = 3, per do
        if w == 1 or seen[s] then
          local n = redis.call('ZCOUNT', KEYS[j * per + s], windows[w], '+inf')
          totals[base + s] = totals[base + s] + n
          seen[s] = n > 0
        end
      end
    end
  end
  for s = 1, 2 do
    local key, into = KEYS[j * per + s], s == 1 and done or failed
    if hours <= 1 or redis.call('ZCOUNT', key, first, '+inf') > 0 then
      for h = 1, hours do
        local from = first + (h - 1) * hour
        into[h] = into[h] + redis.call('ZCOUNT', key, from, '(' .. (from + hour))
      end
    end
  end
  local ok = redis.call('ZREVRANGE', KEYS[j * per + 1], 0, 0, 'WITHSCORES')
  local bad = redis.call('ZREVRANGE', KEYS[j * per + 2], 0, 0, 'WITHSCORES')
  if bad[1] and (not ok[1] or tonumber(bad[2]) > tonumber(ok[2])) then
    failing[#failing + 1] = j
    failing[#failing + 1] = bad[1]
  end
end
return { totals, done, failed, failing }`;

// Appends a line to a field of a run's hash, only while the run exists, keeping the last ARGV[3] lines (0: all).
// KEYS: [1] run hash. ARGV: [1] field, [2] line, [3] lines kept.
const APPEND_LINE = `if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local out = cur and (cur .. '\\n' .. ARGV[2]) or ARGV[2]
local keep = tonumber(ARGV[3])
if keep > 0 then
  local _, breaks = string.gsub(out, '\\n', '')
  while breaks >= keep do
    out = string.sub(out, string.find(out, '\\n', 1, true) + 1)
    breaks = breaks - 1
  end
end
redis.call('HSET', KEYS[1], ARGV[1], out)
return 1`;

// Appends to a JSON list in a field of a run's hash, only while the run exists. KEYS: [1] run hash. ARGV: [1] field, [2] value.
const APPEND_CHILD = `if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local list = raw and cjson.decode(raw) or {}
list[#list + 1] = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(list))
return 1`;

// overlap 'skip' and 'replace' (control/overlap.ts).
// KEYS[1] the job's overlap set. ARGV: [1] queue key prefix, [2] id to reserve ('' = none), [3] grace (ms),
// [4] 'skip' (refuse when another run counts) or 'replace' (reserve anyway), [5] id to leave out (the caller itself).
// Returns { 1 | 0 (refused), newer: the first run reserved after the caller that counts, or the newest reservation even
// when it has finished ('' = none), ...older counting runs }.
const CLAIM = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local grace = tonumber(ARGV[3]) * 1000
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local selfScore = redis.call('ZSCORE', KEYS[1], ARGV[5])
selfScore = selfScore and tonumber(selfScore) or nil
local newest = 0
local newer = ''
local others = {}
for i = 1, #members, 2 do
  local id = members[i]
  local score = tonumber(members[i + 1])
  if score > newest then newest = score end
  if id ~= ARGV[5] and id ~= ARGV[2] then
    local counts
    if redis.call('EXISTS', ARGV[1] .. id) == 0 then
      counts = now - score < grace
    else
      counts = not (redis.call('ZSCORE', ARGV[1] .. 'completed', id) or redis.call('ZSCORE', ARGV[1] .. 'failed', id))
    end
    if not counts then
      -- ZRANGE is in reservation order: the last member is the newest reservation, kept as the mark of what it replaced.
      if i == #members - 1 then
        if selfScore and score > selfScore and newer == '' then newer = id end
      else
        redis.call('ZREM', KEYS[1], id)
      end
    elseif selfScore and score > selfScore then
      if newer == '' then newer = id end
    else
      others[#others + 1] = id
    end
  end
end
if ARGV[4] == 'skip' and (#others > 0 or newer ~= '') then
  if newer ~= '' then others[#others + 1] = newer end
  return { 0, '', unpack(others) }
end
if ARGV[2] ~= '' then
  if now <= newest then now = newest + 1 end
  redis.call('ZADD', KEYS[1], now, ARGV[2])
end
return { 1, newer, unpack(others) }`;

// A token's registration and its run's claims history in one script, which also keeps one live execution per run:
// - a token is registered only while its execution holds the run's BullMQ lock (ARGV[4]; '' = no lock to check), so an
//   execution that lost its run to another worker (stalled past its lock, then woke up) cannot mint a live token;
// - a new execution's first token first revokes every earlier token of the run (ARGV[5] = '1'): a crashed or stalled
//   execution's token is refused from the moment the run is re-run.
// The history is a field of the run's BullMQ hash (JSON lines), so it dies with the run. Should that hash not exist (or
// carry an expiry), the field gets one: nothing written here outlives its run by more than a token's lifetime.
// The token index gets the jti with its expiry; APPLY prunes its expired members once per call (a bounded set: the live
// tokens, plus those revoked since the last GET /api/tokens).
// The token key's value is the token's claims (no secret: GET /api/tokens shows them), the same JSON line as the history's.
// KEYS: [1] token key, [2] run hash, [3] lock key, [4] token index. ARGV: [1] ttl ms, [2] claims, [3] orphan keep ms, [4]
// lock token, [5] revoke earlier, [6] token key prefix, [7] history field, [8] jti, [9] expiry (epoch ms), [10] the expiry
// below which members are pruned (now minus a margin, epoch ms). Returns 1, or 0 when the lock is not held.
const REGISTER = `if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[4] then return 0 end
local history = redis.call('HGET', KEYS[2], ARGV[7])
if ARGV[5] == '1' and history then
  for c in string.gmatch(history, '[^\\n]+') do
    local ok, t = pcall(cjson.decode, c)
    if ok and type(t) == 'table' and type(t.jti) == 'string' then
      redis.call('DEL', ARGV[6] .. t.jti)
      redis.call('ZREM', KEYS[4], t.jti)
    end
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[9], ARGV[8])
local pttl = redis.call('PTTL', KEYS[2])
redis.call('HSET', KEYS[2], ARGV[7], history and (history .. '\\n' .. ARGV[2]) or ARGV[2])
if pttl ~= -1 and pttl < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 1`;

/** KEYS and ARGV of one REGISTER call. */
const REGISTER_KEYS = 4;

// Registrations and revocations of concurrent runs share one command: everything a turn of the event loop asks for is sent
// as one call of this script (revocations first, then each registration exactly as REGISTER does it, its own lock check
// included), instead of one command per token. Each caller's promise settles only once Redis has run the whole call, so a
// token is live when its registration resolves and dead when its revocation resolves, never before.
// KEYS: the token index, the keys to delete, then REGISTER's keys of each registration. ARGV: [1] how many keys to delete,
// [2] REGISTER's ARGV count, [3] the token key prefix (a deleted key's jti leaves the index too), then REGISTER's ARGV of
// each registration. Returns REGISTER's answer for each registration, in order.
const APPLY = `local function register(KEYS, ARGV)
${REGISTER}
end
local deletes, per, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for s = 2, deletes + 1, 500 do
  local last = math.min(s + 499, deletes + 1)
  redis.call('DEL', unpack(KEYS, s, last))
  local jtis = {}
  for i = s, last do jtis[#jtis + 1] = string.sub(KEYS[i], #prefix + 1) end
  redis.call('ZREM', KEYS[1], unpack(jtis))
end
local out = {}
local k, a = deletes + 2, 4
-- The index loses its expired members once per call (below the first registration's floor), not once per registration.
if k <= #KEYS then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[a + 9]) end
while k <= #KEYS do
  out[#out + 1] = register({ unpack(KEYS, k, k + ${REGISTER_KEYS} - 1) }, { unpack(ARGV, a, a + per - 1) })
  k, a = k + ${REGISTER_KEYS}, a + per
end
return out`;

// The dispatcher (runtime/dispatch.ts).
// KEYS[1] the busy set. ARGV[1] the queue key prefix (`<prefix>:`), ARGV[2..] job names: drops the ones with no active run.
const UNMARK_IDLE = `
for i = 2, #ARGV do
  if redis.call('LLEN', ARGV[1] .. ARGV[i] .. ':active') == 0 then redis.call('SREM', KEYS[1], ARGV[i]) end
end
return 0`;

// KEYS[1] the busy set. ARGV[1] the queue key prefix, ARGV[2] overdue before (ms), ARGV[3..] job names. Returns the jobs
// that have runs to take now (their marker is set again): ready runs in a queue that is not paused or at its concurrency
// (their marker may have been taken by a process that froze, or died before it could act), or an overdue delayed run.
const SWEEP = `
local due = {}
for i = 3, #ARGV do
  local q = ARGV[1] .. ARGV[i]
  local active = redis.call('LLEN', q .. ':active')
  if active > 0 then redis.call('SADD', KEYS[1], ARGV[i]) end
  local meta = redis.call('HMGET', q .. ':meta', 'paused', 'concurrency')
  local open = not meta[1] and not (meta[2] and active >= tonumber(meta[2]))
  local ready = open and (redis.call('LLEN', q .. ':wait') > 0 or redis.call('ZCARD', q .. ':prioritized') > 0)
  local first = redis.call('ZRANGE', q .. ':delayed', 0, 0, 'WITHSCORES')
  if ready or (first[2] and math.floor(tonumber(first[2]) / 4096) <= tonumber(ARGV[2])) then
    redis.call('ZADD', q .. ':marker', 0, '0')
    due[#due + 1] = ARGV[i]
  end
end
return due`;

// KEYS: a queue's marker, wait list and prioritized set. Removes the marker's '0' (runs ready) when none is ready.
const CLEAR_MARKER = `
if redis.call('LLEN', KEYS[2]) == 0 and redis.call('ZCARD', KEYS[3]) == 0 then redis.call('ZREM', KEYS[1], '0') end
return 0`;

// Sets a hash field and returns its previous value, in one call (the alerts' last outcome per job). KEYS: [1] the hash.
// ARGV: [1] field, [2] value.
const SWAP_FIELD = `local previous = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return previous`;

// Releases a lock only if it is still the caller's (the scheduler sync's). KEYS: [1] lock. ARGV: [1] the caller's id.
const RELEASE_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** Each command's name and how many of its arguments are keys (absent: the call says, first). */
const COMMANDS = {
  jobscopeMany: { lua: MANY },
  jobscopeTally: { lua: TALLY },
  jobscopeAppendLine: { numberOfKeys: 1, lua: APPEND_LINE },
  jobscopeAppendChild: { numberOfKeys: 1, lua: APPEND_CHILD },
  jobscopeOverlapClaim: { numberOfKeys: 1, lua: CLAIM },
  jobscopeApply: { lua: APPLY },
  jobscopeUnmarkIdle: { numberOfKeys: 1, lua: UNMARK_IDLE },
  jobscopeSweep: { numberOfKeys: 1, lua: SWEEP },
  jobscopeClearMarker: { numberOfKeys: 3, lua: CLEAR_MARKER },
  jobscopeReleaseLock: { numberOfKeys: 1, lua: RELEASE_LOCK },
  jobscopeSwapField: { numberOfKeys: 1, lua: SWAP_FIELD },
} satisfies Record<string, { numberOfKeys?: number; lua: string }>;

/** The command the token store sends its batch of registrations and revocations with (TokenStore, TOKEN_CONNECTION). */
export const TOKEN_APPLY: keyof typeof COMMANDS = 'jobscopeApply';

type Arg = string | number;
/** The connection with the commands defined (what ioredis adds for each `defineCommand`). */
type Defined = Record<keyof typeof COMMANDS, (...args: Arg[]) => Promise<unknown>>;

/** The typed calls of every script, on one connection. */
export class Scripts {
  private readonly redis: Defined;
  constructor(redis: Redis) {
    for (const [name, command] of Object.entries(COMMANDS)) if (!(name in redis)) redis.defineCommand(name, command);
    this.redis = redis as unknown as Defined;
  }

  /** MANY: `op` over `keys`, with the shared arguments, then each key's own. */
  many<T>(op: string, keys: string[], args: Arg[]): Promise<T[]> {
    return this.redis.jobscopeMany(keys.length, ...keys, op, ...args) as Promise<T[]>;
  }

  /** TALLY over the keys of a slice of jobs (see TALLY). */
  tally(keys: string[], args: Arg[]): Promise<[number[], number[], number[], Arg[]]> {
    return this.redis.jobscopeTally(keys.length, ...keys, ...args) as Promise<[number[], number[], number[], Arg[]]>;
  }

  /** Appends a line to a field of a run's hash while the run exists, keeping the last `keep` (0: all); 0 when it is gone. */
  appendLine(runKey: string, field: string, line: string, keep: number): Promise<number> {
    return this.redis.jobscopeAppendLine(runKey, field, line, keep) as Promise<number>;
  }

  /** Appends `value` to the JSON list in a field of a run's hash while the run exists; 0 when it is gone. */
  appendChild(runKey: string, field: string, value: string): Promise<number> {
    return this.redis.jobscopeAppendChild(runKey, field, value) as Promise<number>;
  }

  overlapClaim(
    key: string,
    queuePrefix: string,
    id: string,
    graceMs: number,
    mode: string,
    self: string,
  ): Promise<[number, string, ...string[]]> {
    return this.redis.jobscopeOverlapClaim(key, queuePrefix, id, graceMs, mode, self) as Promise<[number, string, ...string[]]>;
  }

  /** APPLY: the revocations and registrations of one turn of the event loop (see APPLY for its keys and arguments). */
  tokenApply(keys: string[], args: Arg[]): Promise<number[]> {
    return this.redis.jobscopeApply(keys.length, ...keys, ...args) as Promise<number[]>;
  }

  unmarkIdle(busyKey: string, queuePrefix: string, jobs: string[]): Promise<number> {
    return this.redis.jobscopeUnmarkIdle(busyKey, queuePrefix, ...jobs) as Promise<number>;
  }

  sweep(busyKey: string, queuePrefix: string, overdueBefore: number, jobs: string[]): Promise<string[]> {
    return this.redis.jobscopeSweep(busyKey, queuePrefix, overdueBefore, ...jobs) as Promise<string[]>;
  }

  clearMarker(marker: string, wait: string, prioritized: string): Promise<number> {
    return this.redis.jobscopeClearMarker(marker, wait, prioritized) as Promise<number>;
  }

  /** Sets `field` of the hash `key` to `value`; resolves with its previous value (null if none). */
  swapField(key: string, field: string, value: string): Promise<string | null> {
    return this.redis.jobscopeSwapField(key, field, value) as Promise<string | null>;
  }

  /** Deletes the lock if it still holds `id`. */
  releaseLock(key: string, id: string): Promise<number> {
    return this.redis.jobscopeReleaseLock(key, id) as Promise<number>;
  }
}

const registries = new WeakMap<Redis, Scripts>();

/**
 * The scripts of a connection, defined on it the first time. Users call it when they are built: a command defined while
 * an auto-pipelined batch of the connection is pending would be missing from that batch.
 */
export function scripts(redis: Redis): Scripts {
  let found = registries.get(redis);
  if (!found) registries.set(redis, (found = new Scripts(redis)));
  return found;
}
