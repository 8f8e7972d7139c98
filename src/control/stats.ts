// A job's statistics (GET /api/jobs/:name/stats): success rate and duration percentiles per hour (last 48 h) and per day
// (last 30 days, in a time zone), over the finished runs Redis keeps. A run's duration is the read model's: from its first
// attempt's start to its end.
import type { Redis } from 'ioredis';
import { hashOf, runOf } from '../run/model.ts';
import { RUN_FIELDS, type RedisKeys } from '../run/redis-keys.ts';
import { FINISHED } from './run-index.ts';

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

/** What a duration needs of a run's hash. */
const DURATION_FIELDS = ['name', 'timestamp', 'processedOn', RUN_FIELDS.attempts] as const;

/** Success rate and duration percentiles per hour (last 48 h) and per day (last 30 days, in `tz`), over the kept runs. */
export async function jobStats(redis: Redis, keys: RedisKeys, job: string, tz = 'UTC', nowMs = Date.now()): Promise<JobStats> {
  const since = nowMs - 30 * 86_400_000;
  const read = redis.pipeline();
  for (const state of FINISHED) read.zrangebyscore(keys.finished(job, state), since, '+inf', 'WITHSCORES', 'LIMIT', 0, 50_000);
  const answers = (await read.exec()) ?? [];
  const runs: { id: string; end: number; ok: boolean }[] = [];
  FINISHED.forEach((state, i) => {
    const flat = ((answers[i] as [Error | null, string[]])[1] ?? []) as string[];
    for (let j = 0; j < flat.length; j += 2) runs.push({ id: flat[j], end: Number(flat[j + 1]), ok: state === 'completed' });
  });
  const points: { end: number; ok: boolean; ms: number | null }[] = [];
  for (let i = 0; i < runs.length; i += 5000) {
    const chunk = runs.slice(i, i + 5000);
    const starts = redis.pipeline();
    for (const r of chunk) starts.hmget(keys.bullJob(job, r.id), ...DURATION_FIELDS);
    const got = (await starts.exec()) ?? [];
    chunk.forEach((r, j) => {
      const hash = hashOf(DURATION_FIELDS, (got[j] as [Error | null, (string | null)[]])[1]);
      const start = hash && runOf(job, r.id, r.ok ? 'completed' : 'failed', hash).firstStartedAt;
      points.push({ end: r.end, ok: r.ok, ms: start ? Math.max(0, r.end - start) : null });
    });
  }
  return { job, tz, runs: points.length, ...bucketStats(points, tz, nowMs) };
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
