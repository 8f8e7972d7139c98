// overlap 'skip' and 'replace', atomic and cluster-wide. A job with either rule keeps the runs that count in a sorted set
// (`RedisKeys.overlap`): a run is added when it is triggered (or, for a scheduled fire, when it starts) and counts while
// BullMQ still has it unfinished: waiting, delayed (a run-later trigger or a retry's backoff), active. One Lua script
// checks and adds, so no two hosts can both see "nothing running" and both add (check-and-add as two steps let 4 of 30
// concurrent triggers through). Finished and vanished runs are dropped as the script meets them, all but the newest.
//
// The score is the reservation's place in one order that every host shares: Redis's own clock in microseconds, made
// strictly increasing. For 'replace' that order is the rule: a run with a newer reservation than its own has been replaced,
// whether or not the cancel sent by the newer trigger reached it (a run reserved but not yet added when the newer trigger
// looked for it cannot be cancelled by id: it finds out here when it starts, and ends without running its handler).
// The newest reservation stays in the set after its run has finished or vanished: it no longer counts, but it still marks
// every run reserved before it as replaced (an older run that could not start while the newest one held the slot would
// otherwise find nothing newer when it finally starts, and run: 3 of 20 did so in a burst through two servers).
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../run/redis-keys.ts';

/** A reserved run whose BullMQ hash does not exist yet is being added; past this it was never added (the adder died). */
const RESERVATION_GRACE_MS = 5000;

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

interface WithClaim {
  jobscopeOverlapClaim(
    key: string,
    queuePrefix: string,
    id: string,
    grace: number,
    mode: string,
    self: string,
  ): Promise<[number, string, ...string[]]>;
}

export interface Claim {
  /** False: overlap 'skip' refused, `others[0]` is the run in the way. */
  ok: boolean;
  /** The job's other runs that still count (unfinished), reserved before `self` (all of them when `self` is not reserved). */
  others: string[];
  /** A run reserved after `self` (counting, or the newest reservation even when finished): for 'replace', `self` was replaced by it. */
  newer: string | null;
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
   * `id` from now on, as the newest reservation. `id` '' only looks.
   */
  async claim(job: string, id: string, mode: 'skip' | 'replace', self = id): Promise<Claim> {
    const [ok, newer, ...others] = await (this.redis as unknown as WithClaim).jobscopeOverlapClaim(
      this.keys.overlap(job),
      this.keys.queue(job),
      id,
      RESERVATION_GRACE_MS,
      mode,
      self,
    );
    return { ok: ok === 1, others, newer: newer || null };
  }

  /** The run no longer counts (it was removed before it started, or its add failed). */
  async release(job: string, id: string): Promise<void> {
    await this.redis.zrem(this.keys.overlap(job), id);
  }
}
