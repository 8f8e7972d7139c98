// Scheduler sync: make the BullMQ job schedulers in Redis equal the schedules in jobs/, and pause/resume that survive restarts.
// Upserting by job name is idempotent, so several processes starting at once cannot double a schedule; a short lock
// keeps their removals of stale schedulers from interleaving.
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import type { RegisteredJob } from '../interfaces.ts';
import type { Logger } from '../log.ts';
import { schedulerRepeat } from '../jobs/schedule.ts';
import { scripts } from '../run/scripts.ts';
import { jobOptions, type Queues } from './queues.ts';

export interface SyncReport {
  upserted: string[];
  unchanged: string[];
  removed: string[];
}

async function withLock<T>(queues: Queues, fn: () => Promise<T>): Promise<T> {
  const key = queues.keys.schedulerSyncLock;
  const id = randomUUID();
  const deadline = Date.now() + 15_000;
  while ((await queues.redis.set(key, id, 'PX', 10_000, 'NX')) !== 'OK') {
    if (Date.now() > deadline) throw new Error('scheduler sync: another process holds the lock for too long');
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    return await fn();
  } finally {
    // Release only our own lock.
    await scripts(queues.redis).releaseLock(key, id);
  }
}

/** The first time after `nowMs` on an `every` schedule's phase (k * every + phase). */
export function nextOnPhase(every: number, phase: number, nowMs: number): number {
  const next = Math.floor(nowMs / every) * every + (phase % every);
  return next > nowMs ? next : next + every;
}

/** `phase` keeps an `every` schedule's phase when it is written again after a pause (BullMQ would fire at once). */
async function upsert(queues: Queues, job: RegisteredJob, phase?: number): Promise<boolean> {
  const queue = queues.queue(job.name);
  const repeat: ReturnType<typeof schedulerRepeat> & { startDate?: number } = schedulerRepeat(job.schedule!);
  if ('every' in repeat && phase !== undefined && Number.isFinite(phase)) repeat.startDate = nextOnPhase(repeat.every, phase, Date.now());
  const existing = await queue.getJobScheduler(job.name);
  const same =
    existing &&
    ('pattern' in repeat
      ? existing.pattern === repeat.pattern && (existing.tz ?? undefined) === repeat.tz
      : existing.every === repeat.every && !existing.pattern);
  // Leave an unchanged scheduler alone: re-upserting an `every` schedule would move its phase on every restart.
  if (same) return false;
  await queue.upsertJobScheduler(job.name, repeat, { name: 'schedule', data: {}, opts: jobOptions(job) });
  return true;
}

/** May this project's sync remove `name`'s scheduler? Only one it created (or one from before owners were recorded). */
async function ownSchedule(queues: Queues, name: string, project: string | undefined): Promise<boolean> {
  if (project === undefined) return true;
  const owner = await queues.redis.hget(queues.keys.scheduleOwners, name);
  return owner === null || owner === project;
}

/**
 * Makes the schedulers equal this registry's schedules. With `project`, each scheduler written is recorded as that
 * project's, and only schedulers of that project (or of none recorded) are removed.
 */
export async function syncSchedules(queues: Queues, logger?: Logger, project?: string): Promise<SyncReport> {
  const report: SyncReport = { upserted: [], unchanged: [], removed: [] };
  await withLock(queues, async () => {
    const { registry, redis, prefix, keys } = queues;
    const paused = new Set(await redis.smembers(queues.pausedKey));
    const knownBefore = new Set(await redis.smembers(keys.knownJobs));
    for (const job of registry.jobs.values()) {
      const queue = queues.queue(job.name);
      // `paused: true` is the state a job starts in: applied when it is first registered, never again (a resume holds).
      if (job.definition.paused === true && !knownBefore.has(job.name) && !paused.has(job.name)) {
        await redis.sadd(queues.pausedKey, job.name);
        await queue.pause();
        paused.add(job.name);
      }
      if (job.schedule && !paused.has(job.name)) {
        const changed = await upsert(queues, job);
        if (project !== undefined) await redis.hset(keys.scheduleOwners, job.name, project);
        (changed ? report.upserted : report.unchanged).push(job.name);
      } else if ((await ownSchedule(queues, job.name, project)) && (await queue.removeJobScheduler(job.name))) {
        report.removed.push(job.name);
      }
    }
    // Jobs whose file is gone: remove their schedulers too (their queues and history stay for the dashboard).
    for (const name of [...knownBefore].filter((n) => !registry.has(n))) {
      if (!(await ownSchedule(queues, name, project))) continue;
      const queue = new Queue(name, { connection: redis, prefix });
      try {
        for (const s of await queue.getJobSchedulers(0, -1)) {
          if (s.key && (await queue.removeJobScheduler(s.key))) report.removed.push(name);
        }
      } finally {
        await queue.close();
      }
      await redis.srem(keys.knownJobs, name);
      await redis.hdel(keys.scheduleOwners, name);
    }
    if (registry.names.length) await redis.sadd(keys.knownJobs, ...registry.names);
  });
  logger?.info(report, 'schedules synced');
  return report;
}

/**
 * Pauses a job: its queue stops handing out runs and its schedule stops firing, on every host, across restarts. An `every`
 * schedule's phase is kept for resume.
 */
export async function pauseJob(queues: Queues, name: string): Promise<void> {
  const queue = queues.queue(name);
  await queues.redis.sadd(queues.pausedKey, name);
  await queue.pause();
  const scheduler = await queue.getJobScheduler(name);
  if (scheduler?.every && scheduler.next) await queues.redis.hset(queues.keys.phase, name, String(scheduler.next % scheduler.every));
  await queue.removeJobScheduler(name);
}

/** Resumes a job; an `every` schedule fires on its old phase (no fire at once, no shift). */
export async function resumeJob(queues: Queues, name: string): Promise<void> {
  const job = queues.registry.get(name);
  const queue = queues.queue(name);
  const phase = await queues.redis.hget(queues.keys.phase, name);
  await queues.redis.srem(queues.pausedKey, name);
  // Registered from now on: a job file's `paused: true` (its initial state) no longer applies.
  await queues.redis.sadd(queues.keys.knownJobs, name);
  if (job.schedule) await upsert(queues, job, phase === null ? undefined : Number(phase));
  await queues.redis.hdel(queues.keys.phase, name);
  await queue.resume();
}
