// One BullMQ queue per job: enqueueing (with params validation, trigger options and overlap rules), run lookups and
// outcomes, cancel. The server, the CLI and the workers all go through this module; none of them touches BullMQ queues directly.
import { createHash, randomUUID } from 'node:crypto';
import { Queue, type Job, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { parseDuration } from '../duration.ts';
import { OverlapSkippedError, ParamsError, RunFinishedError, TriggerOptionsError, UnknownRunError } from '../errors.ts';
import type { KeepRule, RegisteredJob, Retention, RunOutcome, RunReport, RunState, Trigger, TriggerOptions } from '../interfaces.ts';
import type { Registry } from '../jobs/registry.ts';
import { nextRuns } from '../jobs/schedule.ts';
import { RedisKeys, RUN_FIELDS, type RunMeta } from '../run/redis-keys.ts';
import type { TokenStore } from '../token/store.ts';
import { OverlapRules } from './overlap.ts';
import { traceIdOf } from '../trace.ts';

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

/** BullMQ's priority range: 1 runs first; 0 (none) runs before every prioritised run, first in first out. */
const MAX_PRIORITY = 2_097_152;
const MAX_KEY_LENGTH = 200;
/** The furthest ahead a run may be delayed (`delay`, `at`): a year. Further is a mistake (1e20 ms would never run). */
export const MAX_DELAY_MS = 365 * 86_400_000;

/** A trigger's options as BullMQ job options, checked; `key` becomes the run's id so a second add finds the first. */
export function runOptions(opts: TriggerOptions, nowMs = Date.now()): { delay?: number; priority?: number; jobId?: string } {
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

/** How a finished run ended, from its state and the name of the error its last attempt recorded (see worker.ts). */
export function outcomeOf(state: RunState, stacktrace: readonly string[] | null | undefined): RunOutcome | null {
  if (state === 'completed') return 'completed';
  if (state !== 'failed') return null;
  const last = stacktrace?.[stacktrace.length - 1] ?? '';
  const name = /^(\w+)/.exec(last)?.[1];
  return OUTCOME_OF_ERROR[name ?? ''] ?? 'failed';
}

/** BullMQ's reason for a run that stalled more than maxStalledCount times (set by the stalled check, applied by a worker). */
export const STALL_LIMIT_REASON = 'job stalled more than allowable limit';

/** What a run that stalled past the cap reports as its error. */
export function stallLimitMessage(maxStalls?: number): string {
  const cap = maxStalls === undefined ? 'JOBSCOPE_MAX_STALLS' : `JOBSCOPE_MAX_STALLS (${maxStalls})`;
  return `stalled too often: its worker stopped (crashed, or froze past its lock) more times in a row than ${cap} allows`;
}

/** The error classes whose names mark an outcome other than 'failed'. */
export const OUTCOME_OF_ERROR: Record<string, RunOutcome> = {
  RunTimeoutError: 'timeout',
  RunCancelledError: 'cancelled',
  RunSkippedError: 'skipped',
  RunMisfireError: 'misfire',
};

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

// Appends to a JSON list in a field of a run's hash, only while the run exists.
const APPEND_CHILD = `if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local list = raw and cjson.decode(raw) or {}
list[#list + 1] = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(list))
return 1`;

interface WithAppend {
  jobscopeAppendChild(key: string, field: string, value: string): Promise<number>;
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
    if (!('jobscopeAppendChild' in redis)) redis.defineCommand('jobscopeAppendChild', { numberOfKeys: 1, lua: APPEND_CHILD });
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
  async enqueue(name: string, data: unknown = {}, opts: TriggerOptions = {}): Promise<EnqueueResult> {
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
    await (this.redis as unknown as WithAppend).jobscopeAppendChild(this.keys.bullJob(job, id), RUN_FIELDS.children, childRunId);
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
    const [job, logs, fields] = await Promise.all([queue.getJob(id), queue.getJobLogs(id, 0, -1), this.runFields(name, id)]);
    if (!job) throw new UnknownRunError(runId);
    return toReport(name, job, state, logs.logs, fields);
  }

  /** jobscope's own fields of a run's hash. */
  async runFields(job: string, id: string): Promise<RunFields> {
    const [trigger, children] = await this.redis.hmget(this.keys.bullJob(job, id), RUN_FIELDS.trigger, RUN_FIELDS.children);
    let list: string[] = [];
    try {
      list = children ? (JSON.parse(children) as string[]) : [];
    } catch {
      list = [];
    }
    return { trigger: (trigger as Trigger | null) ?? null, children: list };
  }

  /** Recent runs of a job, newest first. */
  async recentRuns(name: string, limit = 20): Promise<RunReport[]> {
    const queue = this.queue(name);
    const jobs = await queue.getJobs(['active', 'waiting', 'delayed', 'prioritized', 'completed', 'failed'], 0, limit - 1, false);
    const reports = await Promise.all(
      jobs.filter(Boolean).map(async (j) => {
        const [state, fields] = await Promise.all([j.getState(), this.runFields(name, j.id!)]);
        return toReport(name, j, state as RunState, [], fields);
      }),
    );
    return reports.sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? '')).slice(0, limit);
  }

  /**
   * Cancels a run that has not started or is waiting for a retry (removes it), or an active one (broadcast to whichever
   * worker process runs it). Either way its tokens are revoked here at once.
   */
  async cancel(runId: string, reason = 'cancelled by user'): Promise<CancelResult> {
    const job = await this.getJob(runId);
    const state = await job.getState();
    if (state === 'completed' || state === 'failed') {
      throw new RunFinishedError(runId, outcomeOf(state, job.stacktrace) ?? state);
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

/** The run's meta from its options (see RunMeta). */
export function metaOf(job: Pick<Job, 'opts'>): RunMeta {
  return ((job.opts as { jobscope?: RunMeta }).jobscope ?? {}) as RunMeta;
}

export interface RunFields {
  trigger: Trigger | null;
  children: string[];
}

export function toReport(name: string, job: Job, state: RunState, logs: string[], fields?: RunFields): RunReport {
  const finished = state === 'completed' || state === 'failed';
  const meta = metaOf(job);
  const trigger = fields?.trigger;
  return {
    runId: runIdOf(name, job.id),
    job: name,
    state,
    outcome: outcomeOf(state, job.stacktrace),
    attempts: job.attemptsMade,
    trigger: trigger || (job.name as RunReport['trigger']) || 'api',
    data: job.data,
    progress: job.progress,
    result: state === 'completed' ? (job.returnvalue ?? null) : null,
    // BullMQ keeps an earlier attempt's failedReason on a run that then completed: that was not the run's error (the
    // attempt rows of the Run page still show it).
    error: state === 'completed' ? null : job.failedReason === STALL_LIMIT_REASON ? stallLimitMessage() : job.failedReason || null,
    logs,
    createdAt: iso(job.timestamp),
    startedAt: iso(job.processedOn),
    finishedAt: finished ? iso(job.finishedOn) : null,
    // A retry's backoff is counted from its failure, which the job does not keep: only a run-later trigger has a known due time.
    dueAt: state === 'delayed' && job.attemptsMade === 0 ? iso(job.timestamp + (job.delay ?? 0)) : null,
    priority: job.priority ?? 0,
    triggeredBy: meta.by ?? (job.name === 'schedule' ? 'schedule' : null),
    retriedBy: meta.retriedBy ?? null,
    parent: meta.parent ?? null,
    children: fields?.children ?? [],
    shard: meta.shard ?? null,
    traceId: traceIdOf(meta.traceparent),
  };
}
