// overlap 'skip' and 'replace', atomic and cluster-wide. A job with either rule keeps the runs that count in a sorted set
// (`RedisKeys.overlap`): a run is added when it is triggered (or, for a scheduled fire, when it starts) and counts while
// BullMQ still has it unfinished: waiting, delayed (a run-later trigger or a retry's backoff), active. One Lua script
// checks and adds, so no two hosts can both see "nothing running" and both add (check-and-add as two steps let 4 of 30
// concurrent triggers through). Finished and vanished runs are dropped as the script meets them.
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../keys.ts';

/** A reserved run whose BullMQ hash does not exist yet is being added; past this it was never added (the adder died). */
const RESERVATION_GRACE_MS = 5000;

// KEYS[1] the job's overlap set. ARGV: [1] queue key prefix, [2] id to reserve ('' = none), [3] now, [4] grace,
// [5] 'skip' (refuse when another run counts) or 'replace' (reserve anyway), [6] id to leave out (the caller itself).
// Returns { 1 | 0 (refused), ...ids of the other runs that count }.
const CLAIM = `
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local now = tonumber(ARGV[3])
local others = {}
for i = 1, #members, 2 do
  local id = members[i]
  if id ~= ARGV[6] and id ~= ARGV[2] then
    local counts
    if redis.call('EXISTS', ARGV[1] .. id) == 0 then
      counts = now - tonumber(members[i + 1]) < tonumber(ARGV[4])
    else
      counts = not (redis.call('ZSCORE', ARGV[1] .. 'completed', id) or redis.call('ZSCORE', ARGV[1] .. 'failed', id))
    end
    if counts then others[#others + 1] = id else redis.call('ZREM', KEYS[1], id) end
  end
end
if ARGV[5] == 'skip' and #others > 0 then return { 0, unpack(others) } end
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[1], now, ARGV[2]) end
return { 1, unpack(others) }`;

interface WithClaim {
  jobscopeOverlapClaim(
    key: string,
    queuePrefix: string,
    id: string,
    now: number,
    grace: number,
    mode: string,
    self: string,
  ): Promise<[number, ...string[]]>;
}

export interface Claim {
  /** False: overlap 'skip' refused, `others[0]` is the run in the way. */
  ok: boolean;
  /** The job's other runs that still count (unfinished). */
  others: string[];
}

export class OverlapRules {
  private readonly redis: Redis;
  private readonly keys: RedisKeys;
  constructor(redis: Redis, keys: RedisKeys) {
    this.redis = redis;
    this.keys = keys;
    if (!('jobscopeOverlapClaim' in redis)) redis.defineCommand('jobscopeOverlapClaim', { numberOfKeys: 1, lua: CLAIM });
  }

  /**
   * Atomically: finds the job's unfinished runs other than `self` and, unless `mode` is 'skip' and there are some, counts
   * `id` from now on. `id` '' only looks.
   */
  async claim(job: string, id: string, mode: 'skip' | 'replace', self = id, nowMs = Date.now()): Promise<Claim> {
    const [ok, ...others] = await (this.redis as unknown as WithClaim).jobscopeOverlapClaim(
      this.keys.overlap(job),
      this.keys.queue(job),
      id,
      nowMs,
      RESERVATION_GRACE_MS,
      mode,
      self,
    );
    return { ok: ok === 1, others };
  }

  /** The run no longer counts (it was removed before it started, or its add failed). */
  async release(job: string, id: string): Promise<void> {
    await this.redis.zrem(this.keys.overlap(job), id);
  }
}
