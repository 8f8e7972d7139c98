// The run history across jobs (GET /api/runs), what the Run page shows of each attempt and log line, and a job's success
// rate and durations over time. Read-only over BullMQ's own structures, plus one index of ours:
// - Finished runs are listed from BullMQ's per-job `completed` and `failed` sorted sets (score: finishedOn). Retention
//   (removeOnComplete/removeOnFail) removes runs from exactly those sets, so a removed run can never be listed from them.
// - Filters BullMQ cannot answer (outcome timeout/cancelled/..., trigger, triggered-by) use our index: per job, finished
//   state and attribute value, a sorted set of BullMQ ids with the same score (`<prefix>:_idx:<job>:<state>:<attr>:<value>`).
//   It is written by the reader, never by workers (nothing is added to a run's hot path): `sync()` reads what BullMQ's sets
//   gained since its mark, and trims every index set below the oldest run its BullMQ set still has. BullMQ's retention
//   always removes the oldest runs of a set first, so the trim removes exactly the runs retention removed; a run removed
//   out of order (Bull Board's clean, a retry) is dropped when a query meets it (each candidate is checked against
//   BullMQ's set). The index holds at most what BullMQ keeps, in a fixed number of keys per job.
// - Unfinished runs (active, waiting, delayed, prioritized, waiting for children) come from BullMQ's lists and sets.
import type { Redis } from 'ioredis';
import type { RunOutcome, RunState } from '../interfaces.ts';
import type { Registry } from '../jobs/registry.ts';
import { RUN_FIELDS, type RedisKeys, type RunMeta } from '../run/redis-keys.ts';
import { outcomeOf, runIdOf } from './queues.ts';

export const OUTCOMES: RunOutcome[] = ['completed', 'failed', 'timeout', 'cancelled', 'skipped', 'misfire'];
const FAILED_OUTCOMES: RunOutcome[] = ['failed', 'timeout', 'cancelled', 'skipped', 'misfire'];
type Finished = 'completed' | 'failed';
const FINISHED: Finished[] = ['completed', 'failed'];

/** Unfinished states and where BullMQ keeps their runs (`<prefix>:<job>:<suffix>`, a list or a sorted set). */
const UNFINISHED: { state: RunState; suffix: string }[] = [
  { state: 'active', suffix: 'active' },
  { state: 'waiting', suffix: 'wait' },
  { state: 'waiting', suffix: 'paused' },
  { state: 'prioritized', suffix: 'prioritized' },
  { state: 'delayed', suffix: 'delayed' },
  { state: 'waiting-children', suffix: 'waiting-children' },
];
export const UNFINISHED_STATES = ['active', 'waiting', 'prioritized', 'delayed', 'waiting-children'];
/** Unfinished runs listed per job and state: the newest this many (a backlog deeper than that is in Bull Board). */
export const UNFINISHED_CAP = 200;

/** Runs finished this close before the index's mark are read again (worker clocks and in-flight finishes). */
const SYNC_MARGIN_MS = 2000;
const SYNC_BATCH = 5000;
/** A query looks at no more candidates than this; past it, it answers what it found and a cursor to go on. */
const MAX_SCAN = 20_000;
export const MAX_LIMIT = 200;

/** A run as the Runs page lists it (no data, no result: those are on the Run page). */
export interface RunRow {
  runId: string;
  job: string;
  state: RunState;
  outcome: RunOutcome | null;
  trigger: string;
  triggeredBy: string | null;
  parent: string | null;
  shard: { index: number; total: number } | null;
  attempts: number;
  createdAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  /** From the first attempt's start to the end (retries and their backoff included). */
  durationMs: number | null;
  /** The first line of the last error, shortened (null for a completed run, whatever its earlier attempts said). */
  error: string | null;
}

export interface RunQuery {
  jobs?: string[];
  /** Outcomes (completed, failed, timeout, cancelled, skipped, misfire) and unfinished states; 'finished', 'unfinished'. */
  states?: string[];
  triggers?: string[];
  /** Exactly who triggered: 'user:<login>', 'cli:<user>', 'client', 'schedule', or 'run:<parent run id>'. */
  by?: string;
  /** Epoch ms: a finished run's finish time, an unfinished run's creation time. */
  from?: number;
  to?: number;
  cursor?: string;
  limit?: number;
}

export interface RunPage {
  runs: RunRow[];
  /** Pass as `cursor` for the next page; null at the end. */
  next: string | null;
}

export class RunQueryError extends Error {
  readonly code = 'ERR_RUN_QUERY';
  readonly status = 400;
  constructor(message: string) {
    super(message);
    this.name = 'RunQueryError';
  }
}

/** One attempt as the Run page shows it. */
export interface AttemptRow {
  attempt: number;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  /** An outcome, 'running', or 'handed back' (shutdown or a lost lock: the attempt did not count). */
  outcome: string;
  error: string | null;
}

export interface LogLine {
  line: string;
  /** When it was logged (null for lines written before jobscope recorded times). */
  time: string | null;
  attempt: number | null;
}

export interface StatsBucket {
  start: string;
  runs: number;
  completed: number;
  successRate: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
}

export interface JobStats {
  job: string;
  tz: string;
  /** Finished runs still kept that the figures are computed from (retention bounds how far back they go). */
  runs: number;
  hourly: StatsBucket[];
  daily: StatsBucket[];
}

const ROW_FIELDS = [
  'name',
  'timestamp',
  'processedOn',
  'finishedOn',
  // BullMQ 6 keeps attemptsMade as `atm`.
  'atm',
  'failedReason',
  'stacktrace',
  'opts',
  RUN_FIELDS.trigger,
  RUN_FIELDS.attempts,
] as const;

function iso(ms: number | null): string | null {
  return ms ? new Date(ms).toISOString() : null;
}

function num(v: string | null | undefined): number | null {
  if (v === null || v === undefined || v === '') return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

function parseJson<T>(v: string | null | undefined): T | null {
  if (!v) return null;
  try {
    return JSON.parse(v) as T;
  } catch {
    return null;
  }
}

/** The recorded attempts of a run (RUN_FIELDS.attempts: JSON lines). */
export interface RecordedAttempt {
  a: number;
  start: number;
  end: number;
  outcome: string;
}

export function recordedAttempts(field: string | null | undefined): RecordedAttempt[] {
  return (field ?? '')
    .split('\n')
    .map((l) => parseJson<RecordedAttempt>(l))
    .filter((r): r is RecordedAttempt => r !== null && typeof r.a === 'number');
}

function firstLine(text: string | null | undefined, max = 300): string | null {
  if (!text) return null;
  const line = text.split('\n')[0];
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** Builds a row from the run hash's fields (ROW_FIELDS order); null when the hash is gone. */
export function rowOf(job: string, id: string, state: RunState, values: (string | null)[]): RunRow | null {
  const [name, timestamp, processedOn, finishedOn, atm, failedReason, stacktrace, opts, jsTrigger, jsAttempts] = values;
  if (name === null && timestamp === null) return null;
  const meta = (parseJson<{ jobscope?: RunMeta }>(opts)?.jobscope ?? {}) as RunMeta;
  const finished = state === 'completed' || state === 'failed';
  const recorded = recordedAttempts(jsAttempts);
  const started = recorded[0]?.start ?? num(processedOn);
  const end = finished ? num(finishedOn) : null;
  return {
    runId: runIdOf(job, id),
    job,
    state,
    outcome: outcomeOf(state, parseJson<string[]>(stacktrace)),
    trigger: jsTrigger || name || 'api',
    triggeredBy: meta.by ?? (name === 'schedule' ? 'schedule' : null),
    parent: meta.parent ?? null,
    shard: meta.shard ?? null,
    attempts: num(atm) ?? 0,
    createdAt: iso(num(timestamp)),
    startedAt: iso(num(processedOn)),
    finishedAt: iso(end),
    durationMs: end && started ? Math.max(0, end - started) : null,
    // An earlier attempt's failedReason stays on a run that then completed: not the run's error.
    error: state === 'completed' ? null : firstLine(failedReason),
  };
}

/** The position of a row in the listing: unfinished runs first (rank 1, by creation), then finished ones (by finish). */
interface Key {
  rank: 0 | 1;
  t: number;
  id: string;
}

/** > 0 when `a` is listed before `b`. */
function compare(a: Key, b: Key): number {
  return a.rank - b.rank || a.t - b.t || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export function encodeCursor(k: Key): string {
  return Buffer.from(JSON.stringify([k.rank, k.t, k.id])).toString('base64url');
}

export function decodeCursor(cursor: string): Key {
  const raw = parseJson<unknown>(Buffer.from(cursor, 'base64url').toString());
  if (!Array.isArray(raw) || (raw[0] !== 0 && raw[0] !== 1) || typeof raw[1] !== 'number' || typeof raw[2] !== 'string') {
    throw new RunQueryError('cursor: not a cursor this server handed out');
  }
  return { rank: raw[0], t: raw[1], id: raw[2] };
}

// Many small reads of many sets in one command: a query over 100 jobs touches hundreds of sets, and one command per set
// would cost more in the client than in Redis. KEYS: the sets (or lists). ARGV[1]: what to read, then its arguments.
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

interface WithMany {
  jobscopeMany(numKeys: number, ...keysThenArgs: (string | number)[]): Promise<unknown[]>;
}

/** The outcomes of failed runs that the index tells apart (the rest of BullMQ's failed set is 'failed'). */
const FAILED_KINDS: RunOutcome[] = ['timeout', 'cancelled', 'skipped', 'misfire'];
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** Hours in the overview's runs-per-hour chart. */
export const OVERVIEW_HOURS = 48;
/** Jobs per TALLY call: one call never holds Redis for long. */
const TALLY_JOBS = 100;
/**
 * The runs-per-hour counts of closed hours are recounted, in the background, this often and when the hour turns (late
 * finishes of the hour that just closed; retention removing old runs): 96 counts per job, the bulk of a whole tally.
 */
const CLOSED_HOURS_RECOUNT_MS = 60_000;
/**
 * Hours recounted on every call: the current one (the hour before was counted whole when the hour turned, and its late
 * finishes are in the next recount of the closed hours).
 */
const OPEN_HOURS = 1;
/**
 * How far behind BullMQ's failed sets the index may be for the overview (a failed run counted as 'failed' until the index
 * has its outcome); the dashboard refreshes every 5 s.
 */
const OVERVIEW_INDEX_LAG_MS = 10_000;

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

interface WithTally {
  jobscopeTally(numKeys: number, ...keysThenArgs: (string | number)[]): Promise<[number[], number[], number[], (string | number)[]]>;
}

/** Finished runs of a time window by outcome (from the runs Redis keeps: retention bounds them). */
export interface OutcomeCounts {
  finished: number;
  completed: number;
  failed: number;
  timeout: number;
  cancelled: number;
  skipped: number;
  misfire: number;
  /** completed / finished; null without finished runs. */
  successRate: number | null;
}

export interface RunsOverview {
  /** Finished runs in the last 24 hours and the last 7 days. */
  last24h: OutcomeCounts;
  last7d: OutcomeCounts;
  /** Runs finished per hour over the last OVERVIEW_HOURS hours (the last bucket is the current hour). */
  hourly: { start: string; completed: number; failed: number }[];
  /** The last run of every job whose last finished run did not complete, newest first. */
  failing: RunRow[];
}

/** A score bound as Redis takes it. */
function bound(n: number): string {
  return n === -Infinity ? '-inf' : n === Infinity ? '+inf' : String(n);
}

/** What the index needs of a run's hash. */
const INDEX_FIELDS = ['name', 'opts', RUN_FIELDS.trigger, 'stacktrace'] as const;

/** The index attribute values of a finished run, from INDEX_FIELDS (values become key parts: encoded, bounded). */
function indexValues(state: Finished, [name, opts, jsTrigger, stacktrace]: (string | null)[]): [string, string][] {
  const part = (v: string) => encodeURIComponent(v.slice(0, 200));
  const by = (parseJson<{ jobscope?: RunMeta }>(opts)?.jobscope ?? {}).by ?? (name === 'schedule' ? 'schedule' : null);
  const out: [string, string][] = [['trigger', part(jsTrigger || name || 'api')]];
  if (by && !by.startsWith('run:')) out.push(['by', part(by)]);
  if (state === 'failed') out.push(['outcome', outcomeOf('failed', parseJson<string[]>(stacktrace)) ?? 'failed']);
  return out;
}

interface Candidate {
  job: string;
  state: Finished;
  id: string;
  score: number;
  /** The index set it came from (null: BullMQ's own set, nothing to check). */
  index: string | null;
}

interface Source {
  job: string;
  state: Finished;
  key: string;
  index: boolean;
}

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
  private syncedAt = 0;
  /** The overview's per-hour counts of closed hours, by the jobs they count (see CLOSED_HOURS_RECOUNT_MS). */
  private hourly: { jobs: string; at: number; firstHour: number; done: number[]; failed: number[] } | undefined;
  private recounting: Promise<void> | undefined;

  constructor(redis: Redis, keys: RedisKeys, registry: Registry) {
    this.redis = redis;
    this.keys = keys;
    this.registry = registry;
    if (!('jobscopeMany' in redis)) redis.defineCommand('jobscopeMany', { lua: MANY });
  }

  /** MANY over `keys` (in slices, so one call never holds Redis long); `args(i)` gives the per-key arguments. */
  private async many<T>(op: string, keys: string[], shared: (string | number)[], per?: (i: number) => (string | number)[]): Promise<T[]> {
    const out: T[] = [];
    for (let i = 0; i < keys.length; i += 500) {
      const slice = keys.slice(i, i + 500);
      const args = per ? slice.flatMap((_, j) => per(i + j)) : [];
      out.push(...((await (this.redis as unknown as WithMany).jobscopeMany(slice.length, ...slice, op, ...shared, ...args)) as T[]));
    }
    return out;
  }

  private finishedSet(job: string, state: Finished): string {
    return `${this.keys.queue(job)}${state}`;
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
    let pending = this.registry.names.flatMap((job) => FINISHED.map((state) => ({ job, state, name: `${job}:${state}` })));
    // Each round reads up to SYNC_BATCH new runs per set; a set with more goes round again (a first sync of a big history).
    for (let round = 0; pending.length && round < 100; round++) {
      const low = (name: string) => {
        const mark = num(marks[name]);
        return mark === null ? -Infinity : mark - SYNC_MARGIN_MS;
      };
      // How many runs each set has from its mark's margin on, and its newest: nothing to read when both are what this
      // process saw last time (the common case: a query costs two O(log n) commands per set).
      const looked = await this.many<[number, string, string]>(
        'look',
        pending.map(({ job, state }) => this.finishedSet(job, state)),
        [],
        (i) => [bound(low(pending[i].name))],
      );
      const changed = pending.filter(({ name }, i) => {
        const [count, newestId, newestScore] = looked[i];
        const seen = this.recent.get(name);
        const cached = seen ? [...seen.values()].filter((score) => score >= low(name)).length : -1;
        const top = `${newestId}:${newestScore}`;
        const same = count === cached && this.newest.get(name) === top;
        this.newest.set(name, top);
        return !same;
      });
      // Retention removes runs when others finish (count) or as time passes (age): the oldest kept run of a set is
      // looked at when the set changed, and of every set once a minute.
      const everyone = Date.now() - this.floorsCheckedAt > 60_000;
      if (everyone) this.floorsCheckedAt = Date.now();
      const floorOf = everyone ? pending : changed;
      const oldest = await this.many<string>(
        'oldest',
        floorOf.map(({ job, state }) => this.finishedSet(job, state)),
        [],
      );
      const trims: { job: string; state: Finished; floor: number | null }[] = [];
      floorOf.forEach(({ job, state, name }, i) => {
        const floor = oldest[i] ? Number(oldest[i]) : null;
        if (this.floors.get(name) !== (floor ?? -1)) trims.push({ job, state, floor });
      });
      const read = this.redis.pipeline();
      for (const { job, state, name } of changed) {
        const from = low(name);
        read.zrangebyscore(
          this.finishedSet(job, state),
          from === -Infinity ? '-inf' : String(from),
          '+inf',
          'WITHSCORES',
          'LIMIT',
          0,
          SYNC_BATCH,
        );
      }
      const answers = changed.length ? ((await read.exec()) ?? []) : [];
      const fresh: { job: string; state: Finished; id: string; score: number }[] = [];
      const next: typeof pending = [];
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
      pending = next;
    }
  }

  private async indexRuns(fresh: { job: string; state: Finished; id: string; score: number }[]): Promise<void> {
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
        if (err || !values || (values[0] === null && values[1] === null)) return;
        for (const [attr, value] of indexValues(c.state, values)) {
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
  async query(q: RunQuery): Promise<RunPage> {
    const limit = Math.min(MAX_LIMIT, Math.max(1, Math.floor(q.limit ?? 50)));
    const jobs = q.jobs?.length ? q.jobs : this.registry.names;
    for (const job of jobs) if (!this.registry.has(job)) throw new RunQueryError(`job: no job named "${job}"`);
    const states = new Set(q.states ?? []);
    for (const s of states) {
      if (!OUTCOMES.includes(s as RunOutcome) && !UNFINISHED_STATES.includes(s) && s !== 'finished' && s !== 'unfinished') {
        throw new RunQueryError(`state: "${s}" is not one of ${[...OUTCOMES, ...UNFINISHED_STATES, 'finished', 'unfinished'].join(', ')}`);
      }
    }
    const all = states.size === 0;
    const outcomes = OUTCOMES.filter((o) => all || states.has('finished') || states.has(o));
    const unfinished = UNFINISHED_STATES.filter((s) => all || states.has('unfinished') || states.has(s));
    const from = q.from ?? -Infinity;
    const to = q.to ?? Infinity;
    const cursor = q.cursor ? decodeCursor(q.cursor) : null;
    const matches = (row: RunRow) =>
      (!q.triggers?.length || q.triggers.includes(row.trigger)) && (q.by === undefined || row.triggeredBy === q.by);

    if (q.by?.startsWith('run:')) return this.childrenOf(q.by.slice(4), { jobs, outcomes, unfinished, from, to, cursor, limit, matches });

    const rows: RunRow[] = [];
    if (unfinished.length && (!cursor || cursor.rank === 1)) {
      for (const row of await this.unfinished(jobs, unfinished)) {
        const t = Date.parse(row.createdAt ?? '') || 0;
        if (t < from || t > to || !matches(row)) continue;
        if (cursor && compare({ rank: 1, t, id: row.runId }, cursor) >= 0) continue;
        rows.push(row);
        if (rows.length === limit) return { runs: rows, next: encodeCursor({ rank: 1, t, id: row.runId }) };
      }
    }
    if (!outcomes.length) return { runs: rows, next: null };
    // The index is brought up to date only for the queries that read it (BullMQ's own sets are always current).
    if (this.needsIndex(outcomes, q)) await this.sync();
    const sources = await this.sources(jobs, outcomes, q, from, to);
    const bound = cursor?.rank === 0 ? cursor : null;
    return this.merge(sources, { from, to, bound, limit, rows, outcomes, matches });
  }

  private needsIndex(outcomes: RunOutcome[], q: RunQuery): boolean {
    const failed = FAILED_OUTCOMES.filter((o) => outcomes.includes(o)).length;
    return Boolean(q.triggers?.length || q.by !== undefined || (failed > 0 && failed < FAILED_OUTCOMES.length));
  }

  /** Picks the smallest way in: BullMQ's finished sets, or the index sets of one filtered attribute. */
  private async sources(jobs: string[], outcomes: RunOutcome[], q: RunQuery, from: number, to: number): Promise<Source[]> {
    const states = FINISHED.filter((s) => (s === 'completed' ? outcomes.includes('completed') : outcomes.some((o) => o !== 'completed')));
    const options: Source[][] = [
      jobs.flatMap((job) => states.map((state) => ({ job, state, key: this.finishedSet(job, state), index: false }))),
    ];
    const failedWanted = FAILED_OUTCOMES.filter((o) => outcomes.includes(o));
    if (failedWanted.length && failedWanted.length < FAILED_OUTCOMES.length) {
      options.push(
        jobs.flatMap((job) => [
          ...(outcomes.includes('completed')
            ? [{ job, state: 'completed' as const, key: this.finishedSet(job, 'completed'), index: false }]
            : []),
          ...failedWanted.map((o) => ({
            job,
            state: 'failed' as const,
            key: this.keys.runIndex(job, 'failed', 'outcome', o),
            index: true,
          })),
        ]),
      );
    }
    const byAttr = (attr: string, values: string[]) =>
      jobs.flatMap((job) =>
        states.flatMap((state) =>
          values.map((v) => ({ job, state, key: this.keys.runIndex(job, state, attr, encodeURIComponent(v.slice(0, 200))), index: true })),
        ),
      );
    if (q.triggers?.length) options.push(byAttr('trigger', q.triggers));
    if (q.by !== undefined) options.push(byAttr('by', [q.by]));
    if (options.length === 1) return options[0];
    const counts = await this.many<number>(
      'count',
      options.flatMap((option) => option.map((s) => s.key)),
      [bound(from), bound(to)],
    );
    let k = 0;
    const sizes = options.map((option) => option.reduce((sum) => sum + Number(counts[k++] ?? 0), 0));
    return options[sizes.indexOf(Math.min(...sizes))];
  }

  /**
   * A k-way merge of the sources, newest first: each source is read a chunk at a time (its chunk doubling each time it is
   * read again), and a candidate is taken only while every source that may hold more has entries buffered, so nothing
   * unread can come before it. Candidates are checked and filtered in batches until the page is full.
   */
  private async merge(
    sources: Source[],
    o: {
      from: number;
      to: number;
      bound: Key | null;
      limit: number;
      rows: RunRow[];
      outcomes: RunOutcome[];
      matches: (row: RunRow) => boolean;
    },
  ): Promise<RunPage> {
    const { rows, limit } = o;
    const keyOf = (c: Candidate): Key => ({ rank: 0, t: c.score, id: runIdOf(c.job, c.id) });
    const reads = sources.map((source) => ({
      source,
      buf: [] as Candidate[],
      /** Where the next read starts (exclusive): the last entry read, or the query's cursor. */
      after: o.bound,
      done: false,
      chunk: Math.min(limit, Math.max(5, Math.ceil((limit * 2) / sources.length))),
    }));
    const refill = async (list: typeof reads) => {
      const answers = await this.many<[string[], string[]]>(
        'read',
        list.map((r) => r.source.key),
        [bound(o.from), bound(o.to)],
        (i) => [list[i].after ? String(list[i].after!.t) : '', list[i].chunk],
      );
      list.forEach((r, i) => {
        const [ties, rest] = answers[i];
        const take = (flat: string[], tie: boolean) => {
          for (let j = 0; j < flat.length; j += 2) {
            const c: Candidate = {
              job: r.source.job,
              state: r.source.state,
              id: flat[j],
              score: Number(flat[j + 1]),
              index: r.source.index ? r.source.key : null,
            };
            if (tie && !(runIdOf(c.job, c.id) < r.after!.id)) continue;
            r.buf.push(c);
          }
        };
        take(ties, true);
        take(rest, false);
        r.done = rest.length / 2 < r.chunk;
        const last = r.buf[r.buf.length - 1];
        if (last) r.after = keyOf(last);
        r.chunk = Math.min(r.chunk * 2, 1000);
      });
    };
    await refill(reads);
    let scanned = 0;
    for (;;) {
      // Take candidates in order while it is safe; stop to refill a source that ran dry but may have more.
      const batch: Candidate[] = [];
      const want = Math.max(20, (limit - rows.length) * 2);
      let dry: typeof reads = [];
      while (batch.length < want) {
        dry = reads.filter((r) => !r.buf.length && !r.done);
        if (dry.length) break;
        let best: (typeof reads)[number] | undefined;
        for (const r of reads) if (r.buf.length && (!best || compare(keyOf(r.buf[0]), keyOf(best.buf[0])) > 0)) best = r;
        if (!best) break;
        batch.push(best.buf.shift()!);
      }
      if (batch.length) {
        const checked = await this.check(batch);
        for (let j = 0; j < batch.length; j++) {
          const row = checked[j];
          if (row && o.outcomes.includes(row.outcome as RunOutcome) && o.matches(row)) {
            rows.push(row);
            if (rows.length === limit) return { runs: rows, next: encodeCursor(keyOf(batch[j])) };
          }
        }
        scanned += batch.length;
        if (scanned >= MAX_SCAN) return { runs: rows, next: encodeCursor(keyOf(batch[batch.length - 1])) };
      }
      if (dry.length) await refill(dry);
      else if (!batch.length) return { runs: rows, next: null };
    }
  }

  /** Reads the candidates' rows; an index entry whose run left BullMQ's set (removed, retried) is dropped from the index. */
  private async check(batch: Candidate[]): Promise<(RunRow | null)[]> {
    const read = this.redis.pipeline();
    for (const c of batch) {
      read.hmget(this.keys.bullJob(c.job, c.id), ...ROW_FIELDS);
      if (c.index) read.zscore(this.finishedSet(c.job, c.state), c.id);
    }
    const answers = (await read.exec()) ?? [];
    const stale = this.redis.pipeline();
    let k = 0;
    const rows = batch.map((c) => {
      const [, values] = answers[k++] as [Error | null, (string | null)[]];
      let inSet = true;
      if (c.index) {
        const [, score] = answers[k++] as [Error | null, string | null];
        inSet = score !== null && Number(score) === c.score;
        if (score === null) stale.zrem(c.index, c.id);
      }
      return inSet && values ? rowOf(c.job, c.id, c.state, values) : null;
    });
    if (stale.length) await stale.exec();
    return rows;
  }

  /** The newest unfinished runs of the jobs (UNFINISHED_CAP per job and state), newest created first. */
  private async unfinished(jobs: string[], states: string[]): Promise<RunRow[]> {
    const places = jobs.flatMap((job) => UNFINISHED.filter((u) => states.includes(u.state)).map((u) => ({ job, ...u })));
    const answers = await this.many<string[]>(
      'newest',
      places.map((p) => this.keys.queue(p.job) + p.suffix),
      [UNFINISHED_CAP],
    );
    const found = new Map<string, { job: string; id: string; state: RunState }>();
    places.forEach((p, i) => {
      const ids = answers[i] ?? [];
      for (const id of ids) if (!found.has(runIdOf(p.job, id))) found.set(runIdOf(p.job, id), { job: p.job, id, state: p.state });
    });
    const list = [...found.values()];
    const hashes = this.redis.pipeline();
    for (const f of list) hashes.hmget(this.keys.bullJob(f.job, f.id), ...ROW_FIELDS);
    const values = list.length ? ((await hashes.exec()) ?? []) : [];
    return list
      .map((f, i) => rowOf(f.job, f.id, f.state, ((values[i] as [Error | null, (string | null)[]])[1] ?? []) as (string | null)[]))
      .filter((r): r is RunRow => r !== null)
      .sort((a, b) => compare(this.unfinishedKey(b), this.unfinishedKey(a)));
  }

  private unfinishedKey(row: RunRow): Key {
    return { rank: 1, t: Date.parse(row.createdAt ?? '') || 0, id: row.runId };
  }

  /** by=run:<id>: the runs that run started (its children list), filtered and paged in memory. */
  private async childrenOf(
    parent: string,
    o: {
      jobs: string[];
      outcomes: RunOutcome[];
      unfinished: string[];
      from: number;
      to: number;
      cursor: Key | null;
      limit: number;
      matches: (row: RunRow) => boolean;
    },
  ): Promise<RunPage> {
    const sep = parent.indexOf(':');
    if (sep < 1) return { runs: [], next: null };
    const raw = await this.redis.hget(this.keys.bullJob(parent.slice(0, sep), parent.slice(sep + 1)), RUN_FIELDS.children);
    const children = (parseJson<string[]>(raw) ?? []).filter((c) => o.jobs.includes(c.slice(0, c.indexOf(':'))));
    const read = this.redis.pipeline();
    for (const c of children) {
      const i = c.indexOf(':');
      const [job, id] = [c.slice(0, i), c.slice(i + 1)];
      read.hmget(this.keys.bullJob(job, id), ...ROW_FIELDS);
      for (const state of FINISHED) read.zscore(this.finishedSet(job, state), id);
    }
    const answers = children.length ? ((await read.exec()) ?? []) : [];
    const keyed: { key: Key; row: RunRow }[] = [];
    children.forEach((c, i) => {
      const sep2 = c.indexOf(':');
      const values = (answers[3 * i] as [Error | null, (string | null)[]])[1];
      const done = FINISHED.find((_, j) => (answers[3 * i + 1 + j] as [Error | null, string | null])[1] !== null);
      const finishedOn = values ? num(values[3]) : null;
      const state: RunState = done ?? (values && num(values[2]) && !finishedOn ? 'active' : 'waiting');
      const row = values ? rowOf(c.slice(0, sep2), c.slice(sep2 + 1), state, values) : null;
      if (!row || !o.matches(row)) return;
      const finished = done !== undefined;
      if (finished ? !o.outcomes.includes(row.outcome as RunOutcome) : !o.unfinished.includes(state)) return;
      const t = finished ? (finishedOn ?? 0) : Date.parse(row.createdAt ?? '') || 0;
      if (t < o.from || t > o.to) return;
      const key: Key = { rank: finished ? 0 : 1, t, id: row.runId };
      if (o.cursor && compare(key, o.cursor) >= 0) return;
      keyed.push({ key, row });
    });
    keyed.sort((a, b) => compare(b.key, a.key));
    const page = keyed.slice(0, o.limit);
    return { runs: page.map((k) => k.row), next: keyed.length > o.limit ? encodeCursor(page[page.length - 1].key) : null };
  }

  /**
   * The fleet at a glance for the jobs given: finished runs by outcome in the last 24 h and 7 days, runs per hour, and the
   * jobs whose last finished run failed. Counts of BullMQ's finished sets and of the index (brought up to date first),
   * summed in Redis: a few commands per 100 jobs, whatever the number of runs.
   */
  async overview(jobs: string[], nowMs = Date.now()): Promise<RunsOverview> {
    // The index tells the outcomes of failed runs apart (the counts themselves come from BullMQ's sets). A refresh waits
    // for it only when it is older than OVERVIEW_INDEX_LAG_MS; else one is started for the next refresh.
    if (Date.now() - this.syncedAt > OVERVIEW_INDEX_LAG_MS) await this.sync();
    else if (Date.now() - this.syncedAt > OVERVIEW_INDEX_LAG_MS / 3) void this.sync().catch(() => undefined);
    const firstHour = Math.floor(nowMs / HOUR_MS) * HOUR_MS - (OVERVIEW_HOURS - 1) * HOUR_MS;
    const jobsKey = jobs.join('\n');
    const cached = this.hourly?.jobs === jobsKey ? this.hourly : undefined;
    // The closed hours come from the cache, recounted in the background once a minute and when the hour turns (the hour
    // that just closed keeps the count of the last refresh until then); only a first call counts every hour itself.
    const whole = !cached;
    const hours = whole ? OVERVIEW_HOURS : OPEN_HOURS;
    const t = await this.tally(jobs, nowMs, firstHour + (OVERVIEW_HOURS - hours) * HOUR_MS, hours);
    const closedHours = OVERVIEW_HOURS - OPEN_HOURS;
    const closed = (from: number[] | undefined): number[] =>
      Array.from({ length: closedHours }, (_, h) => (cached ? (from?.[(firstHour - cached.firstHour) / HOUR_MS + h] ?? 0) : 0));
    const done = whole ? t.done : [...closed(cached?.done), ...t.done];
    const failed = whole ? t.failed : [...closed(cached?.failed), ...t.failed];
    this.hourly = { jobs: jobsKey, at: whole ? nowMs : cached.at, firstHour, done, failed };
    if (cached && (cached.firstHour !== firstHour || nowMs - cached.at > CLOSED_HOURS_RECOUNT_MS)) this.recountHours(jobs, jobsKey);

    const per = 2 + FAILED_KINDS.length;
    const window = (w: number): OutcomeCounts => {
      const [completed, all, ...kinds] = t.totals.slice(w * per, (w + 1) * per);
      const out: OutcomeCounts = {
        finished: completed + all,
        completed,
        failed: all,
        timeout: 0,
        cancelled: 0,
        skipped: 0,
        misfire: 0,
        successRate: null,
      };
      FAILED_KINDS.forEach((kind, k) => {
        out[kind as 'timeout'] = kinds[k];
        out.failed -= kinds[k];
      });
      // The index can lag BullMQ's set for a run that failed this instant: never a negative count.
      out.failed = Math.max(0, out.failed);
      out.successRate = out.finished ? completed / out.finished : null;
      return out;
    };
    const read = this.redis.pipeline();
    for (const f of t.failing) read.hmget(this.keys.bullJob(f.job, f.id), ...ROW_FIELDS);
    const answers = t.failing.length ? ((await read.exec()) ?? []) : [];
    const rows = t.failing
      .map((f, i) => rowOf(f.job, f.id, 'failed', ((answers[i] as [Error | null, (string | null)[]])[1] ?? []) as (string | null)[]))
      .filter((r): r is RunRow => r !== null)
      .sort((a, b) => (b.finishedAt ?? '').localeCompare(a.finishedAt ?? ''));
    return {
      last24h: window(0),
      last7d: window(1),
      hourly: done.map((completed, h) => ({ start: new Date(firstHour + h * HOUR_MS).toISOString(), completed, failed: failed[h] })),
      failing: rows,
    };
  }

  /** Counts every hour of the overview again, off the request (one at a time), and keeps them for the next refreshes. */
  private recountHours(jobs: string[], jobsKey: string): void {
    if (this.recounting) return;
    const nowMs = Date.now();
    const firstHour = Math.floor(nowMs / HOUR_MS) * HOUR_MS - (OVERVIEW_HOURS - 1) * HOUR_MS;
    this.recounting = this.tally(jobs, nowMs, firstHour, OVERVIEW_HOURS)
      .then(({ done, failed }) => {
        // Unless the hour turned meanwhile (the next refresh starts another).
        if (this.hourly?.jobs === jobsKey && this.hourly.firstHour === firstHour)
          this.hourly = { jobs: jobsKey, at: nowMs, firstHour, done, failed };
      })
      .catch(() => undefined)
      .finally(() => (this.recounting = undefined));
  }

  /** TALLY over `jobs`, a slice at a time: window totals, runs per hour from `countFrom` for `hours`, the failing jobs. */
  private async tally(
    jobs: string[],
    nowMs: number,
    countFrom: number,
    hours: number,
  ): Promise<{ totals: number[]; done: number[]; failed: number[]; failing: { job: string; id: string }[] }> {
    if (!('jobscopeTally' in this.redis)) this.redis.defineCommand('jobscopeTally', { lua: TALLY });
    const totals: number[] = new Array<number>(2 * (2 + FAILED_KINDS.length)).fill(0);
    const done: number[] = new Array<number>(hours).fill(0);
    const failed: number[] = new Array<number>(hours).fill(0);
    const failing: { job: string; id: string }[] = [];
    for (let i = 0; i < jobs.length; i += TALLY_JOBS) {
      const slice = jobs.slice(i, i + TALLY_JOBS);
      const keys = slice.flatMap((job) => [
        ...FINISHED.map((state) => this.finishedSet(job, state)),
        ...FAILED_KINDS.map((kind) => this.keys.runIndex(job, 'failed', 'outcome', kind)),
      ]);
      const [t, d, f, bad] = await (this.redis as unknown as WithTally).jobscopeTally(
        keys.length,
        ...keys,
        nowMs - DAY_MS,
        nowMs - 7 * DAY_MS,
        countFrom,
        hours,
        HOUR_MS,
      );
      t.forEach((n, k) => (totals[k] += Number(n)));
      d.forEach((n, k) => (done[k] += Number(n)));
      f.forEach((n, k) => (failed[k] += Number(n)));
      for (let k = 0; k < bad.length; k += 2) failing.push({ job: slice[Number(bad[k])], id: String(bad[k + 1]) });
    }
    return { totals, done, failed, failing };
  }

  /** Success rate and duration percentiles per hour (last 48 h) and per day (last 30 days, in `tz`), over the kept runs. */
  async stats(job: string, tz = 'UTC', nowMs = Date.now()): Promise<JobStats> {
    const since = nowMs - 30 * 86_400_000;
    const read = this.redis.pipeline();
    for (const state of FINISHED) read.zrangebyscore(this.finishedSet(job, state), since, '+inf', 'WITHSCORES', 'LIMIT', 0, 50_000);
    const answers = (await read.exec()) ?? [];
    const runs: { id: string; end: number; ok: boolean }[] = [];
    FINISHED.forEach((state, i) => {
      const flat = ((answers[i] as [Error | null, string[]])[1] ?? []) as string[];
      for (let j = 0; j < flat.length; j += 2) runs.push({ id: flat[j], end: Number(flat[j + 1]), ok: state === 'completed' });
    });
    const points: { end: number; ok: boolean; ms: number | null }[] = [];
    for (let i = 0; i < runs.length; i += 5000) {
      const chunk = runs.slice(i, i + 5000);
      const starts = this.redis.pipeline();
      for (const r of chunk) starts.hmget(this.keys.bullJob(job, r.id), 'processedOn', RUN_FIELDS.attempts);
      const got = (await starts.exec()) ?? [];
      chunk.forEach((r, j) => {
        const [processedOn, attempts] = ((got[j] as [Error | null, (string | null)[]])[1] ?? []) as (string | null)[];
        const start = recordedAttempts(attempts)[0]?.start ?? num(processedOn);
        points.push({ end: r.end, ok: r.ok, ms: start ? Math.max(0, r.end - start) : null });
      });
    }
    return { job, tz, runs: points.length, ...bucketStats(points, tz, nowMs) };
  }
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], p: number): number | null {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Offset of `tz` from UTC at `ms`, in ms (Intl, so daylight saving time is right). */
export function tzOffsetMs(tz: string, ms: number): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: tz,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  }).formatToParts(new Date(ms));
  const v = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  const asUtc = Date.UTC(v('year'), v('month') - 1, v('day'), v('hour'), v('minute'), v('second'));
  return asUtc - Math.floor(ms / 1000) * 1000;
}

/** The start (UTC ms) of the day in `tz` that contains `ms`. */
function dayStart(tz: string, ms: number): number {
  const offset = tzOffsetMs(tz, ms);
  const local = ms + offset;
  const midnight = local - (((local % 86_400_000) + 86_400_000) % 86_400_000);
  // The offset at midnight can differ from the offset now (a daylight saving change that day).
  return midnight - tzOffsetMs(tz, midnight - offset);
}

export function bucketStats(
  points: { end: number; ok: boolean; ms: number | null }[],
  tz: string,
  nowMs: number,
): { hourly: StatsBucket[]; daily: StatsBucket[] } {
  const summarise = (start: number, inside: typeof points): StatsBucket => {
    const ms = inside
      .map((p) => p.ms)
      .filter((m): m is number => m !== null)
      .sort((a, b) => a - b);
    const completed = inside.filter((p) => p.ok).length;
    return {
      start: new Date(start).toISOString(),
      runs: inside.length,
      completed,
      successRate: inside.length ? completed / inside.length : null,
      p50Ms: percentile(ms, 50),
      p95Ms: percentile(ms, 95),
    };
  };
  const HOUR = 3_600_000;
  const firstHour = Math.floor(nowMs / HOUR) * HOUR - 47 * HOUR;
  const hours = new Map<number, typeof points>();
  for (let t = firstHour; t <= nowMs; t += HOUR) hours.set(t, []);
  const days = new Map<number, typeof points>();
  let day = dayStart(tz, nowMs - 29 * 86_400_000);
  while (day <= nowMs) {
    days.set(day, []);
    day = dayStart(tz, day + 36 * HOUR);
  }
  const dayKeys = [...days.keys()];
  for (const p of points) {
    const h = Math.floor(p.end / HOUR) * HOUR;
    hours.get(h)?.push(p);
    // The last day start at or before the point (a handful of days: a linear walk from the end is cheap).
    for (let i = dayKeys.length - 1; i >= 0; i--) {
      if (dayKeys[i] <= p.end) {
        days.get(dayKeys[i])!.push(p);
        break;
      }
    }
  }
  return {
    hourly: [...hours].map(([start, inside]) => summarise(start, inside)),
    daily: [...days].map(([start, inside]) => summarise(start, inside)),
  };
}

/** The Run page's attempt rows: the attempts that did not complete as recorded, then the current or last one from BullMQ. */
export function attemptRows(
  state: RunState,
  fields: { recorded: string | null; processedOn: number | null; finishedOn: number | null; attemptsMade: number; stacktrace: string[] },
  outcome: RunOutcome | null,
): AttemptRow[] {
  const recorded = recordedAttempts(fields.recorded);
  const rows: AttemptRow[] = recorded.map((r) => ({
    attempt: r.a,
    startedAt: iso(r.start),
    finishedAt: iso(r.end),
    durationMs: Math.max(0, r.end - r.start),
    outcome: r.outcome,
    error: null,
  }));
  // BullMQ keeps one stack per failed attempt, in order: they name the errors of the recorded failed attempts.
  const failedRows = rows.filter((r) => FAILED_OUTCOMES.includes(r.outcome as RunOutcome));
  const stacks = fields.stacktrace;
  failedRows.forEach((row, i) => {
    const stack = stacks[stacks.length - failedRows.length + i];
    row.error = firstLine(stack ?? null, 1000);
  });
  const last = rows[rows.length - 1];
  // The attempt after the last recorded one (a retried run's attempts go on from there).
  const nextAttempt = Math.max(fields.attemptsMade, last && last.outcome !== 'handed back' ? last.attempt + 1 : last ? last.attempt : 1, 1);
  if (state === 'active') {
    rows.push({
      attempt: last && last.outcome !== 'handed back' ? last.attempt + 1 : Math.max(fields.attemptsMade + 1, last?.attempt ?? 1),
      startedAt: iso(fields.processedOn),
      finishedAt: null,
      durationMs: fields.processedOn ? Date.now() - fields.processedOn : null,
      outcome: 'running',
      error: null,
    });
  } else if (
    (state === 'completed' || state === 'failed') &&
    !(last && last.attempt === fields.attemptsMade && last.outcome !== 'handed back')
  ) {
    // Completed attempts are not recorded (the run's own times are theirs); a failure nobody recorded (a stalled run) neither.
    const stack = stacks[stacks.length - 1];
    rows.push({
      attempt: nextAttempt,
      startedAt: iso(fields.processedOn),
      finishedAt: iso(fields.finishedOn),
      durationMs: fields.processedOn && fields.finishedOn ? Math.max(0, fields.finishedOn - fields.processedOn) : null,
      outcome: outcome ?? state,
      error: state === 'failed' ? firstLine(stack ?? null, 1000) : null,
    });
  }
  return rows;
}

/**
 * Log lines with their time and attempt: RUN_FIELDS.logMeta runs in step with the log list, aligned at the end. A line is
 * given to the attempt row that had started by its time (the recorded number otherwise).
 */
export function logLines(logs: string[], meta: string | null, rows: AttemptRow[] = []): LogLine[] {
  const entries = (meta ?? '').split('\n').filter(Boolean);
  const offset = logs.length - entries.length;
  return logs.map((line, i) => {
    const entry = i - offset >= 0 ? entries[i - offset] : undefined;
    const [ms, attempt] = (entry ?? '').split(',').map(Number);
    if (!entry || !ms) return { line, time: null, attempt: null };
    return { line, time: new Date(ms).toISOString(), attempt: rowAt(rows, ms)?.attempt ?? (attempt || null) };
  });
}

/** The attempt row that had started by `ms` (the latest such). */
export function rowAt(rows: AttemptRow[], ms: number): AttemptRow | undefined {
  let found: AttemptRow | undefined;
  for (const row of rows) {
    const start = row.startedAt ? Date.parse(row.startedAt) : NaN;
    if (start <= ms && (!found || start >= Date.parse(found.startedAt!))) found = row;
  }
  return found;
}

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

interface WithAppendLine {
  jobscopeAppendLine(key: string, field: string, line: string, keep: number): Promise<number>;
}

/**
 * Appends a line to one of jobscope's fields of a run's hash (RUN_FIELDS.attempts, RUN_FIELDS.logMeta), only while the run
 * exists (nothing is left behind a removed run), keeping the last `keep` lines (0: all). Resolves 0 when the run is gone.
 */
export function appendRunLine(redis: Redis, runKey: string, field: string, line: string, keep = 0): Promise<number> {
  if (!('jobscopeAppendLine' in redis)) redis.defineCommand('jobscopeAppendLine', { numberOfKeys: 1, lua: APPEND_LINE });
  return (redis as unknown as WithAppendLine).jobscopeAppendLine(runKey, field, line, keep).catch(() => 0);
}
