// The fleet at a glance (GET /api/overview): finished runs by outcome in the last 24 h and 7 days, runs per hour, and the
// jobs whose last finished run failed. Counts of BullMQ's finished sets and of the run index (run-index.ts), summed in
// Redis by one script (TALLY) per 100 jobs: a few commands whatever the number of runs, never a read of every run.
import type { Redis } from 'ioredis';
import { ROW_FIELDS, rowOf, type RunRow } from '../run/model.ts';
import type { RedisKeys } from '../run/redis-keys.ts';
import { FAILED_KINDS, scripts } from '../run/scripts.ts';
import { FINISHED, type RunIndex } from './run-index.ts';

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

export class RunCounts {
  private readonly redis: Redis;
  private readonly keys: RedisKeys;
  private readonly index: RunIndex;
  /** The overview's per-hour counts of closed hours, by the jobs they count (see CLOSED_HOURS_RECOUNT_MS). */
  private hourly: { jobs: string; at: number; firstHour: number; done: number[]; failed: number[] } | undefined;
  private recounting: Promise<void> | undefined;

  constructor(redis: Redis, keys: RedisKeys, index: RunIndex) {
    this.redis = redis;
    this.keys = keys;
    this.index = index;
  }

  /**
   * The fleet at a glance for the jobs given: finished runs by outcome in the last 24 h and 7 days, runs per hour, and the
   * jobs whose last finished run failed. Counts of BullMQ's finished sets and of the index (brought up to date first),
   * summed in Redis: a few commands per 100 jobs, whatever the number of runs.
   */
  async overview(jobs: string[], nowMs = Date.now()): Promise<RunsOverview> {
    // The index tells the outcomes of failed runs apart (the counts themselves come from BullMQ's sets). A refresh waits
    // for it only when it is older than OVERVIEW_INDEX_LAG_MS; else one is started for the next refresh.
    if (Date.now() - this.index.syncedAt > OVERVIEW_INDEX_LAG_MS) await this.index.sync();
    else if (Date.now() - this.index.syncedAt > OVERVIEW_INDEX_LAG_MS / 3) void this.index.sync().catch(() => undefined);
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
    const totals: number[] = new Array<number>(2 * (2 + FAILED_KINDS.length)).fill(0);
    const done: number[] = new Array<number>(hours).fill(0);
    const failed: number[] = new Array<number>(hours).fill(0);
    const failing: { job: string; id: string }[] = [];
    for (let i = 0; i < jobs.length; i += TALLY_JOBS) {
      const slice = jobs.slice(i, i + TALLY_JOBS);
      const keys = slice.flatMap((job) => [
        ...FINISHED.map((state) => this.keys.finished(job, state)),
        ...FAILED_KINDS.map((kind) => this.keys.runIndex(job, 'failed', 'outcome', kind)),
      ]);
      const [t, d, f, bad] = await scripts(this.redis).tally(keys, [nowMs - DAY_MS, nowMs - 7 * DAY_MS, countFrom, hours, HOUR_MS]);
      t.forEach((n, k) => (totals[k] += Number(n)));
      d.forEach((n, k) => (done[k] += Number(n)));
      f.forEach((n, k) => (failed[k] += Number(n)));
      for (let k = 0; k < bad.length; k += 2) failing.push({ job: slice[Number(bad[k])], id: String(bad[k + 1]) });
    }
    return { totals, done, failed, failing };
  }
}
