// The run index: filters BullMQ cannot answer (outcome timeout/cancelled/..., trigger, triggered-by) read it. Per job,
// finished state and attribute value, a sorted set of BullMQ ids scored with the run's finish time, like BullMQ's own
// finished sets (RedisKeys.runIndex). It is written by the reader, never by workers (nothing is added to a run's hot path):
// `sync()` reads what BullMQ's sets gained since its mark, and trims every index set below the oldest run its BullMQ set
// still has. BullMQ's retention always removes the oldest runs of a set first, so the trim removes exactly the runs
// retention removed; a run removed out of order (Bull Board's clean, a retry) is dropped when a query meets it (each
// candidate is checked against BullMQ's set). The index holds at most what BullMQ keeps, in a fixed number of keys per job.
import type { Redis } from 'ioredis';
import type { Registry } from '../jobs/registry.ts';
import { hashOf, runOf } from '../run/model.ts';
import { RUN_FIELDS, type RedisKeys } from '../run/redis-keys.ts';
import { scripts } from '../run/scripts.ts';

export type Finished = 'completed' | 'failed';
export const FINISHED: Finished[] = ['completed', 'failed'];

/** Runs finished this close before the index's mark are read again (worker clocks and in-flight finishes). */
const SYNC_MARGIN_MS = 2000;
const SYNC_BATCH = 5000;

/** A score bound as Redis takes it. */
export function bound(n: number): string {
  return n === -Infinity ? '-inf' : n === Infinity ? '+inf' : String(n);
}

function num(v: string | null | undefined): number | null {
  if (v === null || v === undefined || v === '') return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

/** What the index needs of a run's hash. */
const INDEX_FIELDS = ['name', 'timestamp', 'opts', RUN_FIELDS.trigger, RUN_FIELDS.outcome] as const;

/** An attribute value as a key part: encoded, bounded. */
export function indexPart(value: string): string {
  return encodeURIComponent(value.slice(0, 200));
}

/** The index attribute values of a finished run, from the read model. */
function indexValues(job: string, id: string, state: Finished, values: (string | null)[]): [string, string][] {
  const hash = hashOf(INDEX_FIELDS, values);
  if (!hash) return [];
  const run = runOf(job, id, state, hash);
  const out: [string, string][] = [['trigger', indexPart(run.trigger)]];
  if (run.triggeredBy && !run.triggeredBy.startsWith('run:')) out.push(['by', indexPart(run.triggeredBy)]);
  if (state === 'failed') out.push(['outcome', run.outcome ?? 'failed']);
  return out;
}

interface Pending {
  job: string;
  state: Finished;
  name: string;
}

type Fresh = { job: string; state: Finished; id: string; score: number };
type Trim = { job: string; state: Finished; floor: number | null };

export class RunIndex {
  private readonly redis: Redis;
  private readonly keys: RedisKeys;
  private readonly registry: Registry;
  private syncing: Promise<void> | undefined;
  /** Per `<job>:<state>`: ids read in the last margin (so a re-read costs no hash reads) and the oldest score seen. */
  private readonly recent = new Map<string, Map<string, number>>();
  private readonly floors = new Map<string, number>();
  private floorsCheckedAt = 0;
  private readonly newest = new Map<string, string>();
  /** When the last completed sync pass started (epoch ms). */
  syncedAt = 0;

  constructor(redis: Redis, keys: RedisKeys, registry: Registry) {
    this.redis = redis;
    this.keys = keys;
    this.registry = registry;
    scripts(redis);
  }

  /** MANY over `keys` (in slices, so one call never holds Redis long); `per(i)` gives the per-key arguments. */
  async many<T>(op: string, keys: string[], shared: (string | number)[], per?: (i: number) => (string | number)[]): Promise<T[]> {
    const out: T[] = [];
    for (let i = 0; i < keys.length; i += 500) {
      const slice = keys.slice(i, i + 500);
      const args = per ? slice.flatMap((_, j) => per(i + j)) : [];
      out.push(...(await scripts(this.redis).many<T>(op, slice, [...shared, ...args])));
    }
    return out;
  }

  /** Brings the index up to date with BullMQ's finished sets (cheap when nothing is new; concurrent callers share a pass). */
  sync(): Promise<void> {
    const started = Date.now();
    this.syncing ??= this.syncPass()
      .then(() => void (this.syncedAt = Math.max(this.syncedAt, started)))
      .finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async syncPass(): Promise<void> {
    const marks = await this.redis.hgetall(this.keys.runIndexMarks);
    let pending: Pending[] = this.registry.names.flatMap((job) => FINISHED.map((state) => ({ job, state, name: `${job}:${state}` })));
    // Each round reads up to SYNC_BATCH new runs per set; a set with more goes round again (a first sync of a big history).
    for (let round = 0; pending.length && round < 100; round++) pending = await this.syncRound(pending, marks);
  }

  /** One round of a sync pass over `pending`: the sets that go round again. */
  private async syncRound(pending: Pending[], marks: Record<string, string>): Promise<Pending[]> {
    const low = (name: string) => {
      const mark = num(marks[name]);
      return mark === null ? -Infinity : mark - SYNC_MARGIN_MS;
    };
    const changed = await this.changed(pending, low);
    const trims = await this.floorsMoved(pending, changed);
    const read = this.redis.pipeline();
    for (const { job, state, name } of changed)
      read.zrangebyscore(this.keys.finished(job, state), bound(low(name)), '+inf', 'WITHSCORES', 'LIMIT', 0, SYNC_BATCH);
    const answers = changed.length ? ((await read.exec()) ?? []) : [];
    const fresh: Fresh[] = [];
    const next: Pending[] = [];
    const markUpdates: string[] = [];
    changed.forEach((source, i) => {
      const { job, state, name } = source;
      const [err, got] = answers[i] as [Error | null, string[]];
      if (err) return;
      const seen = this.recent.get(name) ?? new Map<string, number>();
      this.recent.set(name, seen);
      let max = num(marks[name]) ?? 0;
      for (let j = 0; j < got.length; j += 2) {
        const id = got[j];
        const score = Number(got[j + 1]);
        max = Math.max(max, score);
        if (seen.get(id) === score) continue;
        seen.set(id, score);
        fresh.push({ job, state, id, score });
      }
      for (const [id, score] of seen) if (score < max - SYNC_MARGIN_MS) seen.delete(id);
      if (got.length / 2 === SYNC_BATCH) next.push(source);
      if (max && max !== num(marks[name])) {
        marks[name] = String(max);
        markUpdates.push(name, String(max));
      }
    });
    await this.indexRuns(fresh);
    await this.trim(trims);
    if (markUpdates.length) await this.redis.hset(this.keys.runIndexMarks, ...markUpdates);
    return next;
  }

  /**
   * The sets with runs to read: how many runs each has from its mark's margin on, and its newest. Nothing to read when both
   * are what this process saw last time (the common case: a query costs two O(log n) commands per set).
   */
  private async changed(pending: Pending[], low: (name: string) => number): Promise<Pending[]> {
    const looked = await this.many<[number, string, string]>(
      'look',
      pending.map(({ job, state }) => this.keys.finished(job, state)),
      [],
      (i) => [bound(low(pending[i].name))],
    );
    return pending.filter(({ name }, i) => {
      const [count, newestId, newestScore] = looked[i];
      const seen = this.recent.get(name);
      const cached = seen ? [...seen.values()].filter((score) => score >= low(name)).length : -1;
      const top = `${newestId}:${newestScore}`;
      const same = count === cached && this.newest.get(name) === top;
      this.newest.set(name, top);
      return !same;
    });
  }

  /**
   * Retention removes runs when others finish (count) or as time passes (age): the oldest kept run of a set is looked at
   * when the set changed, and of every set once a minute. The sets whose oldest run moved.
   */
  private async floorsMoved(pending: Pending[], changed: Pending[]): Promise<Trim[]> {
    const everyone = Date.now() - this.floorsCheckedAt > 60_000;
    if (everyone) this.floorsCheckedAt = Date.now();
    const floorOf = everyone ? pending : changed;
    const oldest = await this.many<string>(
      'oldest',
      floorOf.map(({ job, state }) => this.keys.finished(job, state)),
      [],
    );
    const trims: Trim[] = [];
    floorOf.forEach(({ job, state, name }, i) => {
      const floor = oldest[i] ? Number(oldest[i]) : null;
      if (this.floors.get(name) !== (floor ?? -1)) trims.push({ job, state, floor });
    });
    return trims;
  }

  private async indexRuns(fresh: Fresh[]): Promise<void> {
    for (let i = 0; i < fresh.length; i += 5000) {
      const chunk = fresh.slice(i, i + 5000);
      const read = this.redis.pipeline();
      for (const c of chunk) read.hmget(this.keys.bullJob(c.job, c.id), ...INDEX_FIELDS);
      const answers = (await read.exec()) ?? [];
      // One ZADD per index set and one SADD per job and state, whatever the number of runs.
      const adds = new Map<string, (string | number)[]>();
      const sets = new Map<string, Set<string>>();
      chunk.forEach((c, j) => {
        const [err, values] = answers[j] as [Error | null, (string | null)[]];
        if (err) return;
        for (const [attr, value] of indexValues(c.job, c.id, c.state, values)) {
          const key = this.keys.runIndex(c.job, c.state, attr, value);
          let members = adds.get(key);
          if (!members) adds.set(key, (members = []));
          members.push(c.score, c.id);
          const keysKey = this.keys.runIndexKeys(c.job, c.state);
          let keys = sets.get(keysKey);
          if (!keys) sets.set(keysKey, (keys = new Set()));
          keys.add(key);
        }
      });
      const write = this.redis.pipeline();
      for (const [key, members] of adds) write.zadd(key, ...members);
      for (const [key, keys] of sets) write.sadd(key, ...keys);
      if (write.length) await write.exec();
    }
  }

  /** Removes from the index every run older than the oldest its BullMQ set still keeps (retention removed those). */
  private async trim(trims: { job: string; state: Finished; floor: number | null }[]): Promise<void> {
    if (!trims.length) return;
    const list = this.redis.pipeline();
    for (const t of trims) list.smembers(this.keys.runIndexKeys(t.job, t.state));
    const answers = (await list.exec()) ?? [];
    const write = this.redis.pipeline();
    trims.forEach((t, i) => {
      const [err, keys] = answers[i] as [Error | null, string[]];
      if (err) return;
      for (const key of keys) write.zremrangebyscore(key, '-inf', t.floor === null ? '+inf' : `(${t.floor}`);
      this.floors.set(`${t.job}:${t.state}`, t.floor ?? -1);
    });
    if (write.length) await write.exec();
    // Index sets left empty are deleted by Redis itself; forget them too.
    const clean = this.redis.pipeline();
    trims.forEach((t, i) => {
      const [, keys] = answers[i] as [Error | null, string[] | undefined];
      for (const key of keys ?? []) clean.exists(key);
    });
    const exists = (await clean.exec()) ?? [];
    const gone = this.redis.pipeline();
    let k = 0;
    trims.forEach((t, i) => {
      const [, keys] = answers[i] as [Error | null, string[] | undefined];
      for (const key of keys ?? [])
        if ((exists[k++] as [Error | null, number])[1] === 0) gone.srem(this.keys.runIndexKeys(t.job, t.state), key);
    });
    if (gone.length) await gone.exec();
  }

  /** Runs across jobs, newest first (unfinished ones on top), filtered, one page at a time. */
}
