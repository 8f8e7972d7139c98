// overlap 'skip' and 'replace', atomic and cluster-wide. A job with either rule keeps the runs that count in a sorted set
// (`RedisKeys.overlap`): a run is added when it is triggered (or, for a scheduled fire, when it starts) and counts while
// BullMQ still has it unfinished: waiting, delayed (a run-later trigger or a retry's backoff), active. One Lua script
// (CLAIM, run/scripts.ts) checks and adds, so no two hosts can both see "nothing running" and both add (check-and-add as two steps let 4 of 30
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
import { scripts } from '../run/scripts.ts';

/** A reserved run whose BullMQ hash does not exist yet is being added; past this it was never added (the adder died). */
const RESERVATION_GRACE_MS = 5000;

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
    scripts(redis);
  }

  /**
   * Atomically: finds the job's unfinished runs other than `self` and, unless `mode` is 'skip' and there are some, counts
   * `id` from now on, as the newest reservation. `id` '' only looks.
   */
  async claim(job: string, id: string, mode: 'skip' | 'replace', self = id): Promise<Claim> {
    const [ok, newer, ...others] = await scripts(this.redis).overlapClaim(
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
