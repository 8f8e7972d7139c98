// One BullMQ queue per job: enqueueing (with params validation and overlap rules), run lookups, cancel, pause/resume.
// The server, the CLI and the workers all go through this module; none of them touches BullMQ queues directly.
import { Queue, type Job, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { OverlapSkippedError, ParamsError, RunFinishedError, UnknownRunError } from '../errors.ts';
import type { RegisteredJob, RunReport, RunState, Trigger } from '../interfaces.ts';
import type { Registry } from '../jobs/registry.ts';
import { nextRuns } from '../jobs/schedule.ts';

/** How long finished runs are kept for the API and dashboard. */
const KEEP_COMPLETED = { age: 7 * 24 * 3600, count: 1000 };
const KEEP_FAILED = { age: 30 * 24 * 3600, count: 5000 };

export function jobOptions(job: RegisteredJob): JobsOptions {
  return {
    attempts: job.attempts,
    ...(job.backoff ? { backoff: job.backoff } : {}),
    removeOnComplete: KEEP_COMPLETED,
    removeOnFail: KEEP_FAILED,
    keepLogs: 1000,
  };
}

export function runIdOf(job: string, id: string | undefined): string {
  return `${job}:${id}`;
}

/** Splits `<job>:<id>`; the job part never contains ':' (job names cannot), the id part may (scheduler ids do). */
export function parseRunId(runId: string): { job: string; id: string } {
  const i = runId.indexOf(':');
  if (i < 1 || i === runId.length - 1) throw new UnknownRunError(runId);
  return { job: runId.slice(0, i), id: runId.slice(i + 1) };
}

function iso(ms: number | undefined | null): string | null {
  return ms ? new Date(ms).toISOString() : null;
}

export interface JobSummary {
  name: string;
  description: string;
  schedule: RegisteredJob['schedule'] | null;
  nextRuns: string[];
  paused: boolean;
  counts: Record<string, number>;
}

export interface CancelResult {
  runId: string;
  /** 'removed': it had not started; 'signalled': the worker running it was told to abort. */
  outcome: 'removed' | 'signalled';
}

export class Queues {
  readonly registry: Registry;
  readonly redis: Redis;
  readonly prefix: string;
  private readonly queues = new Map<string, Queue>();

  constructor(registry: Registry, redis: Redis, prefix: string) {
    this.registry = registry;
    this.redis = redis;
    this.prefix = prefix;
    for (const name of registry.names) this.queues.set(name, new Queue(name, { connection: redis, prefix }));
  }

  queue(name: string): Queue {
    this.registry.get(name); // throws UnknownJobError with the list of known jobs
    return this.queues.get(name)!;
  }

  all(): Queue[] {
    return [...this.queues.values()];
  }

  /** The Redis set of paused job names: pause survives restarts and covers the schedule as well as the queue. */
  get pausedKey(): string {
    return `${this.prefix}:paused`;
  }

  get cancelChannel(): string {
    return `${this.prefix}:cancel`;
  }

  async isPaused(name: string): Promise<boolean> {
    return (await this.redis.sismember(this.pausedKey, name)) === 1;
  }

  /**
   * Validates `data` against the job's params and enqueues a run. Throws ParamsError (bad data), UnknownJobError,
   * or OverlapSkippedError (overlap 'skip' while a run waits or runs). With overlap 'replace', earlier runs are cancelled.
   */
  async enqueue(name: string, data: unknown = {}, trigger: Trigger = 'api'): Promise<{ runId: string }> {
    const job = this.registry.get(name);
    const payload = structuredClone(data ?? {});
    const issues = job.validate(payload);
    if (issues) throw new ParamsError(name, issues);
    const queue = this.queue(name);
    if (job.overlap === 'skip') {
      const counts = await queue.getJobCounts('active', 'waiting', 'prioritized');
      if (counts.active + counts.waiting + counts.prioritized > 0) throw new OverlapSkippedError(name);
    } else if (job.overlap === 'replace') {
      await this.cancelAll(name, 'replaced by a newer run');
    }
    const added = await queue.add(trigger, payload, jobOptions(job));
    return { runId: runIdOf(name, added.id) };
  }

  async getJob(runId: string): Promise<Job> {
    const { job, id } = parseRunId(runId);
    if (!this.registry.has(job)) throw new UnknownRunError(runId);
    const found = await this.queue(job).getJob(id);
    if (!found) throw new UnknownRunError(runId);
    return found;
  }

  async report(runId: string): Promise<RunReport> {
    const { job: name, id } = parseRunId(runId);
    if (!this.registry.has(name)) throw new UnknownRunError(runId);
    const queue = this.queue(name);
    // State first: a job read before its state could predate its completion and lack the result.
    const state = (await queue.getJobState(id)) as RunState;
    const [job, logs] = await Promise.all([queue.getJob(id), queue.getJobLogs(id, 0, -1)]);
    if (!job) throw new UnknownRunError(runId);
    return toReport(name, job, state, logs.logs);
  }

  /** Recent runs of a job, newest first. */
  async recentRuns(name: string, limit = 20): Promise<RunReport[]> {
    const queue = this.queue(name);
    const jobs = await queue.getJobs(['active', 'waiting', 'delayed', 'prioritized', 'completed', 'failed'], 0, limit - 1, false);
    const reports = await Promise.all(jobs.filter(Boolean).map(async (j) => toReport(name, j, (await j.getState()) as RunState, [])));
    return reports.sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? '')).slice(0, limit);
  }

  /** Cancels a waiting run (removes it) or an active one (broadcast to whichever worker process runs it). */
  async cancel(runId: string, reason = 'cancelled by user'): Promise<CancelResult> {
    const job = await this.getJob(runId);
    const state = await job.getState();
    if (state === 'completed' || state === 'failed') {
      throw new RunFinishedError(runId, state);
    }
    if (state !== 'active') {
      try {
        await job.remove();
        return { runId, outcome: 'removed' };
      } catch {
        // It became active between getState and remove (the lock protects it): fall through to the broadcast.
      }
    }
    await this.redis.publish(this.cancelChannel, JSON.stringify({ job: job.queueName, id: job.id, reason }));
    return { runId, outcome: 'signalled' };
  }

  /** Cancels every waiting and active run of a job (overlap 'replace'); `exceptId` spares the run doing the replacing. */
  async cancelAll(name: string, reason: string, exceptId?: string): Promise<void> {
    const queue = this.queue(name);
    const jobs = await queue.getJobs(['waiting', 'prioritized', 'active'], 0, 1000);
    await Promise.all(
      jobs.filter((j) => j && j.id !== exceptId).map((j) => this.cancel(runIdOf(name, j.id), reason).catch(() => undefined)),
    );
  }

  async summaries(): Promise<JobSummary[]> {
    return Promise.all(this.registry.names.map((name) => this.summary(name)));
  }

  async summary(name: string): Promise<JobSummary> {
    const job = this.registry.get(name);
    const queue = this.queue(name);
    const [paused, counts, scheduler] = await Promise.all([
      this.isPaused(name),
      queue.getJobCounts('active', 'waiting', 'delayed', 'prioritized', 'completed', 'failed'),
      job.schedule ? queue.getJobScheduler(name) : Promise.resolve(undefined),
    ]);
    return {
      name,
      description: job.description,
      schedule: job.schedule ?? null,
      nextRuns:
        job.schedule && !paused ? nextRuns(job.schedule, 5, new Date(), scheduler?.next ?? undefined).map((d) => d.toISOString()) : [],
      paused,
      counts,
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.all().map((q) => q.close()));
  }
}

export function toReport(name: string, job: Job, state: RunState, logs: string[]): RunReport {
  const finished = state === 'completed' || state === 'failed';
  return {
    runId: runIdOf(name, job.id),
    job: name,
    state,
    attempts: job.attemptsMade,
    trigger: (job.name as RunReport['trigger']) || 'api',
    data: job.data,
    progress: job.progress,
    result: state === 'completed' ? (job.returnvalue ?? null) : null,
    error: job.failedReason || null,
    logs,
    createdAt: iso(job.timestamp),
    startedAt: iso(job.processedOn),
    finishedAt: finished ? iso(job.finishedOn) : null,
  };
}
