// One BullMQ queue per job: enqueueing (with params validation, trigger options and overlap rules), reading a run (its
// state, hash and logs, handed to the read model in run/model.ts), cancel. The server, the CLI and the workers all go
// through this module; none of them touches BullMQ queues directly.
import { createHash, randomUUID } from 'node:crypto';
import { Queue, type Job, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { parseDuration } from '../duration.ts';
import { OverlapSkippedError, ParamsError, RunFinishedError, TriggerOptionsError, UnknownRunError } from '../errors.ts';
import type { KeepRule, RegisteredJob, Retention, RunReport, RunState, TriggerRequest } from '../interfaces.ts';
import type { Registry } from '../jobs/registry.ts';
import { nextRuns } from '../jobs/schedule.ts';
import { parseRunId, runIdOf, runOf, runReport, type Run } from '../run/model.ts';
import { outcomeOf } from '../run/outcome.ts';
import { RedisKeys, RUN_FIELDS, type RunMeta } from '../run/redis-keys.ts';
import { scripts } from '../run/scripts.ts';
import type { TokenStore } from '../token/store.ts';
import { OverlapRules } from './overlap.ts';

/** How many finished runs are kept for the API and dashboard, and how long, unless the environment or the job says otherwise. */
export const DEFAULT_RETENTION: Retention = {
  completed: { count: 1000, age: 7 * 24 * 3600 },
  failed: { count: 5000, age: 30 * 24 * 3600 },
  logs: 1000,
};

/** Sets the environment's retention defaults on every job of the registry (jobOptions reads them from the job). */
export function applyRetention(registry: Registry, retention: Retention | undefined): void {
  if (!retention) return;
  for (const job of registry.jobs.values()) job.retention = retention;
}

/** A retention rule as BullMQ's removeOnComplete/removeOnFail: no limit at all keeps every run. */
function keepJobs(rule: KeepRule): JobsOptions['removeOnComplete'] {
  if (rule.age !== undefined) return { age: rule.age, ...(rule.count !== undefined ? { count: rule.count } : {}) };
  if (rule.count !== undefined) return { count: rule.count };
  return false;
}

export function jobOptions(job: RegisteredJob): JobsOptions {
  const defaults = job.retention ?? DEFAULT_RETENTION;
  return {
    attempts: job.attempts,
    ...(job.backoff ? { backoff: job.backoff } : {}),
    // A rule in the job's own `keep` replaces the default rule for those runs.
    removeOnComplete: keepJobs(job.keep?.completed ?? defaults.completed),
    removeOnFail: keepJobs(job.keep?.failed ?? defaults.failed),
    keepLogs: defaults.logs,
  };
}

/** BullMQ's priority range: 1 runs first; 0 (none) runs before every prioritised run, first in first out. */
const MAX_PRIORITY = 2_097_152;
const MAX_KEY_LENGTH = 200;
/** The furthest ahead a run may be delayed (`delay`, `at`): a year. Further is a mistake (1e20 ms would never run). */
export const MAX_DELAY_MS = 365 * 86_400_000;

/** A trigger's options as BullMQ job options, checked; `key` becomes the run's id so a second add finds the first. */
export function runOptions(opts: TriggerRequest, nowMs = Date.now()): { delay?: number; priority?: number; jobId?: string } {
  const out: { delay?: number; priority?: number; jobId?: string } = {};
  if (opts.delay !== undefined && opts.at !== undefined) throw new TriggerOptionsError('give delay or at, not both');
  if (opts.delay !== undefined) {
    const ms = parseDuration(opts.delay);
    if (ms === null) throw new TriggerOptionsError(`delay: ${JSON.stringify(opts.delay)} is not a duration (examples: '30s', '5m', 60000)`);
    if (ms > MAX_DELAY_MS) throw new TriggerOptionsError(`delay: ${JSON.stringify(opts.delay)} is more than a year ahead (at most 365d)`);
    out.delay = ms;
  }
  if (opts.at !== undefined) {
    const at = typeof opts.at === 'string' && /^\d{4}-\d\d-\d\dT/.test(opts.at) ? Date.parse(opts.at) : NaN;
    if (Number.isNaN(at))
      throw new TriggerOptionsError(`at: ${JSON.stringify(opts.at)} is not an ISO 8601 time (example: 2026-12-24T18:00:00Z)`);
    if (at < nowMs - 60_000) throw new TriggerOptionsError(`at: ${opts.at} is in the past`);
    if (at - nowMs > MAX_DELAY_MS) throw new TriggerOptionsError(`at: ${opts.at} is more than a year ahead (at most 365 days)`);
    if (at > nowMs) out.delay = at - nowMs;
  }
  if (opts.priority !== undefined) {
    if (!Number.isInteger(opts.priority) || opts.priority < 1 || opts.priority > MAX_PRIORITY) {
      throw new TriggerOptionsError(`priority: must be an integer from 1 (first) to ${MAX_PRIORITY}`);
    }
    out.priority = opts.priority;
  }
  if (opts.key !== undefined) {
    if (typeof opts.key !== 'string' || opts.key.length === 0 || opts.key.length > MAX_KEY_LENGTH) {
      throw new TriggerOptionsError(`key: must be a string of 1 to ${MAX_KEY_LENGTH} characters`);
    }
    // The id is derived, never the key itself: any key is safe in a Redis key and a URL, and ids of keyed runs are recognisable.
    out.jobId = `key-${createHash('sha256').update(opts.key).digest('base64url').slice(0, 24)}`;
  }
  return out;
}

export interface JobSummary {
  name: string;
  description: string;
  schedule: RegisteredJob['schedule'] | null;
  nextRuns: string[];
  paused: boolean;
  counts: Record<string, number>;
}

export interface EnqueueResult {
  runId: string;
  /** True when `key` matched a run that is still kept: no new run was made. */
  existing?: boolean;
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
  readonly keys: RedisKeys;
  readonly overlap: OverlapRules;
  private readonly tokens: TokenStore | undefined;
  private readonly queues = new Map<string, Queue>();

  /** Where the queues' errors go (a Queue with no listener prints them raw on stderr). */
  private readonly onError: (err: Error) => void;

  /** `tokens`: where a cancelled run's tokens are revoked at once (not only when its worker hears the cancel). */
  constructor(registry: Registry, redis: Redis, prefix: string, tokens?: TokenStore, onError: (err: Error) => void = () => {}) {
    this.registry = registry;
    this.redis = redis;
    this.prefix = prefix;
    this.keys = new RedisKeys(prefix);
    this.overlap = new OverlapRules(redis, this.keys);
    scripts(redis);
    this.tokens = tokens;
    this.onError = onError;
    for (const name of registry.names) this.queues.set(name, this.open(name));
  }

  private open(name: string): Queue {
    const queue = new Queue(name, { connection: this.redis, prefix: this.prefix });
    queue.on('error', this.onError);
    return queue;
  }

  queue(name: string): Queue {
    this.registry.get(name); // throws UnknownJobError with the list of known jobs
    let queue = this.queues.get(name);
    // A job added while running (--watch) gets its queue on first use.
    if (!queue) this.queues.set(name, (queue = this.open(name)));
    return queue;
  }

  /** The queues of the registry's jobs (a job removed by --watch keeps its queue open, but is not listed). */
  all(): Queue[] {
    return this.registry.names.map((name) => this.queue(name));
  }

  /** The Redis set of paused job names: pause survives restarts and covers the schedule as well as the queue. */
  get pausedKey(): string {
    return this.keys.paused;
  }

  get cancelChannel(): string {
    return this.keys.cancelChannel;
  }

  /** Paused in Redis, or a job with `paused: true` not registered yet (the scheduler sync pauses it when it registers it). */
  async isPaused(name: string): Promise<boolean> {
    if ((await this.redis.sismember(this.pausedKey, name)) === 1) return true;
    return this.registry.jobs.get(name)?.definition.paused === true && (await this.redis.sismember(this.keys.knownJobs, name)) === 0;
  }

  /**
   * Validates `data` against the job's params and enqueues a run with the trigger's options. Throws ParamsError (bad
   * data), TriggerOptionsError, UnknownJobError, or OverlapSkippedError (overlap 'skip' while another run is waiting,
   * delayed, active or waiting for a retry: checked and added atomically, on every host). With overlap 'replace', every
   * earlier unfinished run is cancelled (the new run starts only once they have stopped: see the worker).
   */
  async enqueue(name: string, data: unknown = {}, opts: TriggerRequest = {}): Promise<EnqueueResult> {
    const job = this.registry.get(name);
    const payload = structuredClone(data ?? {});
    const issues = job.validate(payload);
    if (issues) throw new ParamsError(name, issues);
    const { jobId: keyedId, ...options } = runOptions(opts);
    const queue = this.queue(name);
    if (keyedId && (await this.redis.exists(this.keys.bullJob(name, keyedId))) === 1) {
      return { runId: runIdOf(name, keyedId), existing: true };
    }
    // Runs that count for overlap get their id before they exist, so the check can reserve it in the same step.
    const jobId = keyedId ?? (job.overlap === 'queue' ? undefined : randomUUID());
    if (job.overlap !== 'queue') {
      const claim = await this.overlap.claim(name, jobId!, job.overlap);
      if (!claim.ok) throw new OverlapSkippedError(name, runIdOf(name, claim.others[0]));
      await Promise.all(claim.others.map((id) => this.cancel(runIdOf(name, id), 'replaced by a newer run').catch(() => undefined)));
    }
    const meta: RunMeta = { by: opts.by, parent: opts.parent, ...(opts.traceparent ? { traceparent: opts.traceparent } : {}) };
    try {
      const added = await queue.add(opts.trigger ?? 'api', payload, {
        ...jobOptions(job),
        ...options,
        ...(jobId ? { jobId } : {}),
        // BullMQ keeps options it does not know with the run: who triggered it and its parent live and die with it.
        ...({ jobscope: meta } as JobsOptions),
      });
      const runId = runIdOf(name, added.id);
      if (opts.parent) await this.addChild(opts.parent, runId);
      return { runId };
    } catch (err) {
      if (jobId && job.overlap !== 'queue') await this.overlap.release(name, jobId).catch(() => undefined);
      throw err;
    }
  }

  /** Records on a run the id of a run it started (a field of its BullMQ hash: it goes when the run goes). */
  async addChild(parentRunId: string, childRunId: string): Promise<void> {
    const { job, id } = parseRunId(parentRunId);
    await scripts(this.redis).appendChild(this.keys.bullJob(job, id), RUN_FIELDS.children, childRunId);
  }

  async getJob(runId: string): Promise<Job> {
    const { job, id } = parseRunId(runId);
    if (!this.registry.has(job)) throw new UnknownRunError(runId);
    const found = await this.queue(job).getJob(id);
    if (!found) throw new UnknownRunError(runId);
    return found;
  }

  /** A run from its hash as it is now (null when it is gone); state first: a hash read before its state could predate its end. */
  async read(job: string, id: string): Promise<Run | null> {
    const state = (await this.queue(job).getJobState(id)) as RunState;
    const hash = await this.redis.hgetall(this.keys.bullJob(job, id));
    return Object.keys(hash).length ? runOf(job, id, state, hash) : null;
  }

  /** A run and its log lines; UnknownRunError when there is no such run. */
  async readWithLogs(runId: string): Promise<{ run: Run; logs: string[] }> {
    const { job, id } = parseRunId(runId);
    if (!this.registry.has(job)) throw new UnknownRunError(runId);
    const [run, logs] = await Promise.all([this.read(job, id), this.queue(job).getJobLogs(id, 0, -1)]);
    if (!run) throw new UnknownRunError(runId);
    return { run, logs: logs.logs };
  }

  async report(runId: string): Promise<RunReport> {
    const { run, logs } = await this.readWithLogs(runId);
    return runReport(run, logs);
  }

  /** Recent runs of a job, newest first. */
  async recentRuns(name: string, limit = 20): Promise<RunReport[]> {
    const ids = await this.queue(name).getRanges(
      ['active', 'waiting', 'delayed', 'prioritized', 'completed', 'failed'],
      0,
      limit - 1,
      false,
    );
    const runs = await Promise.all(ids.map((id) => this.read(name, id)));
    return runs
      .filter((r): r is Run => r !== null)
      .map((r) => runReport(r, []))
      .sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? ''))
      .slice(0, limit);
  }

  /**
   * Cancels a run that has not started or is waiting for a retry (removes it), or an active one (broadcast to whichever
   * worker process runs it). Either way its tokens are revoked here at once.
   */
  async cancel(runId: string, reason = 'cancelled by user'): Promise<CancelResult> {
    const job = await this.getJob(runId);
    const state = await job.getState();
    if (state === 'completed' || state === 'failed') {
      const recorded = await this.redis.hget(this.keys.bullJob(job.queueName, job.id!), RUN_FIELDS.outcome);
      throw new RunFinishedError(runId, outcomeOf(state, recorded) ?? state);
    }
    let result: CancelResult | undefined;
    if (state !== 'active') {
      try {
        await job.remove();
        await this.overlap.release(job.queueName, job.id!);
        result = { runId, outcome: 'removed' };
      } catch {
        // It became active between getState and remove (the lock protects it): fall through to the broadcast.
      }
    }
    if (!result) {
      await this.redis.publish(this.cancelChannel, JSON.stringify({ job: job.queueName, id: job.id, reason }));
      result = { runId, outcome: 'signalled' };
    }
    await this.tokens?.revokeRun(runId);
    return result;
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
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}
