// The control plane: what the API, the CLI, the dashboard and createClient ask and tell, answered from Redis. Triggers,
// runs, cancel, pause/resume, schedules, live tokens, workers. It runs no job, holds no signing key and writes nothing on
// disk: `jobscope list`, `trigger` and `cancel` open one Redis connection and nothing else. The worker host
// (runtime/runtime.ts) adds workers and tokens on top of one.
import { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { RunWaitTimeoutError } from '../errors.ts';
import cronstrue from 'cronstrue';
import type { LiveToken, Retention, RunReport, TokenClaims, TriggerRequest } from '../interfaces.ts';
import type { Registry } from '../jobs/registry.ts';
import { describeSchedule } from '../jobs/schedule.ts';
import type { Logger } from '../log.ts';
import { redactUrl } from '../redact.ts';
import { listWorkers, type WorkerStatus } from './fleet.ts';
import { connect, greetingOf, RedisErrorLog, refusalOf, type RedisLogger } from '../redis/connect.ts';
import { TokenStore } from '../token/store.ts';
import { attemptRows, attemptsWithClaims, logLines, type AttemptRow, type LogLine } from '../run/detail.ts';
import { parseRunId, runReport } from '../run/model.ts';
import { RunRecord } from '../run/record.ts';
import { RUN_FIELDS, type RunMeta } from '../run/redis-keys.ts';
import { applyRetention, DEFAULT_RETENTION, Queues, type CancelResult, type EnqueueResult, type JobSummary } from './queues.ts';
import { RunCounts, type RunsOverview } from './overview.ts';
import { RunIndex } from './run-index.ts';
import { RunHistory, RunQueryError, type RunPage, type RunQuery } from './runs.ts';
import { jobStats, type JobStats } from './stats.ts';
import { checkProject } from './project.ts';
import { pauseJob, resumeJob, syncSchedules, type SyncReport } from './schedules.ts';
import { traceTrigger } from '../trace.ts';

export interface ControlOptions {
  redisUrl: string;
  prefix: string;
  registry: Registry;
  /**
   * Where Redis errors go (refusals once with what to do; an outage as one line when lost, one per `outageLogMs` while it
   * lasts, one when back); none: silent.
   */
  logger?: RedisLogger;
  /** How often a Redis outage is logged again while it lasts (JOBSCOPE_REDIS_OUTAGE_LOG_INTERVAL, default 30 s). */
  outageLogMs?: number;
  /** A connection to share (the worker host's); by default the control plane opens and closes its own. */
  connection?: Redis;
  /** Retention defaults (JOBSCOPE_KEEP_*) for the runs this control plane enqueues; default: the built-in ones. */
  retention?: Retention;
  /** The project this runner belongs to (config.project): schedule sync removes only this project's schedules. */
  project?: string;
}

/** A job as GET /api/jobs lists it: DESIGN.md's fields, plus what the Jobs page shows. */
export interface JobView extends JobSummary {
  scheduleText: string;
  params: Record<string, unknown> | null;
  overlap: string;
  attempts: number;
  concurrency: number;
  concurrencyPerWorker: number;
  rateLimit: { max: number; durationMs: number } | null;
  misfire: string;
  misfireGraceMs: number;
  timeoutMs: number | null;
  audience: string[];
  scope: string[];
  lastRun: Pick<RunReport, 'runId' | 'state' | 'outcome' | 'trigger' | 'createdAt' | 'finishedAt'> | null;
  /** The schedule in words ("At 02:30, every day"); null without a schedule. */
  scheduleWords: string | null;
  /** The schedule's time zone (cron `tz`); null: the server's. */
  timeZone: string | null;
  /** Finished runs kept: { count, age (seconds) } for each end, and log lines per run. */
  retention: { completed: { count?: number; age?: number }; failed: { count?: number; age?: number }; logs: number };
}

/** The Run page's view: the run with its claims, one row per attempt (with that attempt's claims), timed log lines. */
export interface RunDetail extends RunView {
  attemptList: (AttemptRow & { claims: TokenClaims[] })[];
  logLines: LogLine[];
}

/** The schedule in words: cronstrue for a cron (seconds included), the short description otherwise. */
export function scheduleWords(schedule: RegisteredJobSchedule): string | null {
  if (!schedule) return null;
  if ('cron' in schedule) {
    try {
      return cronstrue.toString(schedule.cron, { use24HourTimeFormat: true, verbose: false });
    } catch {
      return null;
    }
  }
  return describeSchedule(schedule);
}

type RegisteredJobSchedule = RunReportSchedule | undefined;
type RunReportSchedule = NonNullable<ReturnType<Registry['get']>['schedule']>;

/** A run as GET /api/runs/:runId reports it: the RunReport plus the claims of each attempt's token(s). */
export interface RunView extends RunReport {
  claims: TokenClaims[];
}

/** GET /api/overview: the fleet at a glance (the dashboard's first page). */
export interface Overview extends RunsOverview {
  generatedAt: string;
  jobs: number;
  paused: number;
  /** Worker processes heard from in the last day (for a login limited to job groups: those serving its jobs). */
  workers: { alive: number; dead: number };
  liveTokens: number;
}

/** The worker connections of a job's queue, as BullMQ lists them. */
export interface QueueWorkers {
  job: string;
  workers: { name: string | null; addr: string | null; age: number; idle: number }[];
}

export class Control {
  readonly registry: Registry;
  readonly prefix: string;
  readonly redis: Redis;
  readonly queues: Queues;
  readonly tokens: TokenStore;
  /** The index of finished runs by outcome, trigger and who (filters BullMQ cannot answer). */
  readonly runIndex: RunIndex;
  /** The run history across jobs (GET /api/runs). */
  readonly history: RunHistory;
  /** The overview's counts (GET /api/overview). */
  readonly runCounts: RunCounts;
  readonly project: string | undefined;
  /**
   * The process's Redis health and error log (with a logger): every connection of the process reports into it (see
   * RedisErrorLog), the readiness probe and the shutdown read it.
   */
  readonly redisLog: RedisErrorLog | undefined;
  private readonly redisUrl: string;
  private readonly ownsConnection: boolean;
  /** One QueueEvents (a blocking connection of its own) per job whose runs someone waits for. */
  private readonly events = new Map<string, { ready: Promise<QueueEvents>; connection: Redis }>();

  constructor(opts: ControlOptions) {
    this.registry = opts.registry;
    this.prefix = opts.prefix;
    this.project = opts.project;
    this.redisUrl = opts.redisUrl;
    this.ownsConnection = !opts.connection;
    this.redis = opts.connection ?? connect(opts.redisUrl);
    // Without a logger (createClient's default) Redis errors stay silent: ioredis reconnects and calls fail with them.
    const redis = this.redis;
    this.redisLog =
      opts.logger && new RedisErrorLog(opts.logger, { everyMs: opts.outageLogMs, probe: () => greetingOf(redis), main: redis });
    const onError = (err: Error) => this.redisLog?.note(err, {}, 'Redis error');
    this.tokens = new TokenStore(this.redis, opts.prefix);
    this.queues = new Queues(opts.registry, this.redis, opts.prefix, this.tokens, onError);
    applyRetention(opts.registry, opts.retention);
    this.runIndex = new RunIndex(this.redis, this.queues.keys, opts.registry);
    this.history = new RunHistory(this.redis, this.queues.keys, opts.registry, this.runIndex);
    this.runCounts = new RunCounts(this.redis, this.queues.keys, this.runIndex);
  }

  /** Resolves when Redis answers; rejects with a clear message after `timeoutMs`. */
  async ready(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer';
    const noteError = (err: Error) => (last = err.message);
    this.redis.on('error', noteError);
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      try {
        // A PING waits in ioredis's queue while it reconnects (BullMQ needs maxRetriesPerRequest: null): bound the wait.
        const late = new Promise<never>(
          (_, reject) => (timer = setTimeout(() => reject(new Error(last)), Math.max(0, deadline - Date.now()))),
        );
        await Promise.race([this.redis.ping(), late]);
        this.redis.off('error', noteError);
        return;
      } catch (err) {
        last = (err as Error).message;
        // Refused for a reason (a wrong password, an ACL): waiting will not change it. Say why at once.
        const refusal = refusalOf(err as Error);
        if (refusal) {
          this.redis.off('error', noteError);
          throw new Error(`${refusal} (${redactUrl(this.redisUrl)}: ${last})`);
        }
        if (Date.now() >= deadline) {
          this.redis.off('error', noteError);
          throw new Error(`cannot reach Redis at ${redactUrl(this.redisUrl)} within ${timeoutMs / 1000} s: ${last}`);
        }
        await new Promise((r) => setTimeout(r, 200));
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** Does Redis answer within `timeoutMs`? At once false while the connection is down (no PING queued behind a reconnect). */
  async redisUp(timeoutMs = 1000): Promise<boolean> {
    if (this.redis.status !== 'ready') return false;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([this.redis.ping(), new Promise((_, rej) => (timer = setTimeout(() => rej(new Error('timeout')), timeoutMs)))]);
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  trigger(job: string, data: unknown = {}, opts: TriggerRequest = {}): Promise<EnqueueResult> {
    // With tracing on, the run carries the trigger span's traceparent in its options (trace.ts), never in its data.
    return traceTrigger(job, opts.by, opts.trigger ?? 'api', (traceparent) =>
      this.queues.enqueue(job, data, traceparent ? { ...opts, traceparent } : opts),
    );
  }

  cancel(runId: string, reason?: string): Promise<CancelResult> {
    return this.queues.cancel(runId, reason);
  }

  pause(job: string): Promise<void> {
    return pauseJob(this.queues, job);
  }

  resume(job: string): Promise<void> {
    return resumeJob(this.queues, job);
  }

  /** Makes the schedulers in Redis equal the schedules of this registry (see schedules.ts). */
  syncSchedules(logger?: Logger): Promise<SyncReport> {
    return syncSchedules(this.queues, logger, this.project);
  }

  /**
   * Refuses when this prefix belongs to another project with jobs there; with `claim` (a runner), takes an unowned one.
   * Without a project (tests, embedding) there is nothing to check.
   */
  checkProject(claim: boolean): Promise<void> {
    if (this.project === undefined) return Promise.resolve();
    return checkProject({ redis: this.redis, keys: this.queues.keys, redisUrl: this.redisUrl, project: this.project, claim });
  }

  report(runId: string): Promise<RunReport> {
    return this.queues.report(runId);
  }

  async run(runId: string): Promise<RunView> {
    const { run, logs } = await this.queues.readWithLogs(runId);
    return { ...runReport(run, logs), claims: run.claims };
  }

  /**
   * Resolves with the run's report once it has finished (completed or failed, whatever the outcome), without polling:
   * BullMQ's QueueEvents. Rejects with RunWaitTimeoutError after `timeoutMs`, UnknownRunError for an unknown run.
   */
  async waitForRun(runId: string, timeoutMs?: number): Promise<RunReport> {
    const { job: name } = parseRunId(runId);
    const job = await this.queues.getJob(runId);
    let events = this.events.get(name);
    const onQueueEventsError = (err: Error) => this.redisLog?.note(err, { job: name }, 'run events error');
    if (!events) {
      const connection = this.redis.duplicate();
      connection.on('error', () => {});
      this.redisLog?.watch(connection);
      // Read the event stream from where it is now: with its default ('$', resolved when its first XREAD runs) an event
      // between a waiter's finished-check and that first read would be lost, and the waiter would wait forever.
      const ready = this.redis.xrevrange(this.queues.keys.events(name), '+', '-', 'COUNT', 1).then((last) => {
        const qe = new QueueEvents(name, { connection, prefix: this.prefix, lastEventId: last[0]?.[0] ?? '0-0' });
        qe.on('error', onQueueEventsError);
        return qe.waitUntilReady().then(() => qe);
      });
      events = { ready, connection };
      this.events.set(name, events);
    }
    try {
      await job.waitUntilFinished(await events.ready, timeoutMs);
    } catch {
      // A failed run rejects with its error: the report below says how it ended. Only a run still going is a timeout.
    }
    const report = await this.report(runId);
    if (report.state !== 'completed' && report.state !== 'failed') throw new RunWaitTimeoutError(runId, report.state, timeoutMs ?? 0);
    return report;
  }

  /** Recent runs of a job, newest first. */
  recentRuns(job: string, limit = 20): Promise<RunReport[]> {
    return this.queues.recentRuns(job, limit);
  }

  async job(name: string): Promise<JobView> {
    const job = this.registry.get(name);
    const [summary, recent] = await Promise.all([this.queues.summary(name), this.queues.recentRuns(name, 5)]);
    // A scheduler keeps its next fire as a delayed job: that is the schedule, not the last run.
    const last = recent.find((r) => r.state !== 'delayed');
    return {
      ...summary,
      scheduleText: describeSchedule(job.schedule),
      params: job.definition.params ?? null,
      overlap: job.overlap,
      attempts: job.attempts,
      concurrency: job.concurrency,
      concurrencyPerWorker: job.concurrencyPerWorker,
      rateLimit: job.rateLimit ?? null,
      misfire: job.misfire,
      misfireGraceMs: job.misfireGraceMs,
      timeoutMs: job.timeoutMs ?? null,
      audience: job.audience,
      scope: job.scope,
      scheduleWords: scheduleWords(job.schedule),
      timeZone: job.schedule && 'cron' in job.schedule ? (job.schedule.tz ?? null) : null,
      retention: {
        completed: job.keep?.completed ?? (job.retention ?? DEFAULT_RETENTION).completed,
        failed: job.keep?.failed ?? (job.retention ?? DEFAULT_RETENTION).failed,
        logs: (job.retention ?? DEFAULT_RETENTION).logs,
      },
      lastRun: last
        ? {
            runId: last.runId,
            state: last.state,
            outcome: last.outcome,
            trigger: last.trigger,
            createdAt: last.createdAt,
            finishedAt: last.finishedAt,
          }
        : null,
    };
  }

  jobs(): Promise<JobView[]> {
    return Promise.all(this.registry.names.map((name) => this.job(name)));
  }

  summaries(): Promise<JobSummary[]> {
    return this.queues.summaries();
  }

  liveTokens(): Promise<LiveToken[]> {
    return this.tokens.list();
  }

  /**
   * Per job, the Redis connection of each live worker process serving it: the one blocking connection its dispatcher waits
   * on for every job it serves (runtime/dispatch.ts), found by its client name in CLIENT LIST.
   */
  async workers(): Promise<QueueWorkers[]> {
    const names = this.queues.all().map((q) => q.name);
    const [live, lists] = await Promise.all([
      this.liveWorkers(),
      names.length ? this.queues.queue(names[0]).getBackend().getClientList() : Promise.resolve([] as string[]),
    ]);
    const clients = new Map<string, QueueWorkers['workers'][number]>();
    for (const line of lists.join('\n').split('\n')) {
      const fields = Object.fromEntries(line.split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
      if (fields.name)
        clients.set(fields.name, {
          name: fields.name,
          addr: fields.addr ?? null,
          age: Number(fields.age ?? 0),
          idle: Number(fields.idle ?? 0),
        });
    }
    return names.map((job) => ({
      job,
      workers: live
        .filter((w) => w.alive && w.jobs.includes(job))
        .flatMap((w) => clients.get(this.queues.keys.dispatchConnection(w.id)) ?? []),
    }));
  }

  /** The worker processes that sent a heartbeat in the last day: alive, or dead since (the executor registry). */
  liveWorkers(): Promise<WorkerStatus[]> {
    return listWorkers(this.redis, this.queues.keys);
  }

  /**
   * The fleet at a glance over `jobs` (default: every job): runs by outcome (24 h, 7 days), runs per hour, the jobs failing
   * now, workers alive and dead, live tokens. Only counts and indexes: no scan of the keyspace, no read of every run.
   */
  async overview(jobs: string[] = this.registry.names): Promise<Overview> {
    const visible = new Set(jobs);
    const everyJob = jobs.length === this.registry.names.length;
    const [runs, workers, tokens, paused] = await Promise.all([
      this.runCounts.overview(jobs),
      this.liveWorkers(),
      this.tokens.list(),
      this.redis.smembers(this.queues.keys.paused),
    ]);
    const mine = workers.filter((w) => everyJob || w.jobs.some((j) => visible.has(j)));
    return {
      generatedAt: new Date().toISOString(),
      jobs: jobs.length,
      paused: paused.filter((j) => visible.has(j)).length,
      workers: { alive: mine.filter((w) => w.alive).length, dead: mine.filter((w) => !w.alive).length },
      liveTokens: tokens.filter((t) => visible.has(t.job)).length,
      ...runs,
    };
  }

  /** Runs across jobs, newest first, filtered, a page at a time (see runs.ts). */
  listRuns(query: RunQuery): Promise<RunPage> {
    return this.history.query(query);
  }

  /** Success rate and duration percentiles of a job per hour and per day (`tz`: the days' time zone). */
  jobStats(name: string, tz = 'UTC'): Promise<JobStats> {
    this.registry.get(name);
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: tz });
    } catch {
      return Promise.reject(new RunQueryError(`tz: "${tz}" is not an IANA time zone`));
    }
    return jobStats(this.redis, this.queues.keys, name, tz);
  }

  /** A run as the Run page shows it: the report and claims, plus each attempt and each log line's time and attempt. */
  async runDetail(runId: string): Promise<RunDetail> {
    const { run, logs } = await this.queues.readWithLogs(runId);
    const rows = attemptRows(run);
    return {
      ...runReport(run, logs),
      claims: run.claims,
      attemptList: attemptsWithClaims(rows, run.claims),
      logLines: logLines(logs, run.logMeta, rows),
    };
  }

  /**
   * Runs a failed run again (BullMQ's retry: the same run, its attempts go on from where they were). Resolves with
   * false when the run has not failed (only a failed run can be retried).
   */
  async retry(runId: string, by?: string): Promise<{ retried: boolean; state: string }> {
    const job = await this.queues.getJob(runId);
    const state = await job.getState();
    if (state !== 'failed') return { retried: false, state };
    if (by) {
      // In the run's stored options (as BullMQ encoded them: its scripts read them), which the worker reads with the run:
      // the attempts from now on name the retrier (triggeredBy, act).
      const key = this.queues.keys.bullJob(parseRunId(runId).job, String(job.id));
      const opts = JSON.parse((await this.redis.hget(key, 'opts')) ?? '{}') as { jobscope?: RunMeta };
      opts.jobscope = { ...opts.jobscope, retriedBy: by };
      await this.redis.hset(key, 'opts', JSON.stringify(opts));
    }
    // Its next failure records its own outcome; one nobody records (a stall past the cap) must not show this one's.
    await this.redis.hdel(this.queues.keys.run(runId), RUN_FIELDS.outcome);
    await job.retry('failed');
    // A line of the run's log with its time, as the worker writes its lines (attempt 0: between attempts).
    if (by) await new RunRecord(this.redis, this.queues.keys.run(runId), job, 0).log(`retried by ${by}`).catch(() => -1);
    return { retried: true, state: 'waiting' };
  }

  /** How many live worker processes serve this job (their heartbeats list it): what `shards: 'workers'` broadcasts to. */
  async workersServing(job: string): Promise<number> {
    return (await this.liveWorkers()).filter((w) => w.alive && w.jobs.includes(job)).length;
  }

  /** Does any worker serve this job right now? */
  async hasWorkers(job: string): Promise<boolean> {
    return (await this.workersServing(job)) > 0;
  }

  /**
   * Closes the connections. With `force` (Redis lost: nothing could be said to it), drops them at once instead of waiting
   * for goodbyes that cannot arrive.
   */
  async close(opts: { force?: boolean } = {}): Promise<void> {
    this.redisLog?.close();
    if (opts.force) {
      for (const { connection } of this.events.values()) connection.disconnect();
      if (this.ownsConnection) this.redis.disconnect();
    }
    await Promise.all(
      [...this.events.values()].map(async ({ ready, connection }) => {
        if (opts.force) return;
        await (await ready.catch(() => undefined))?.close();
        connection.disconnect();
      }),
    );
    await this.queues.close();
    if (this.ownsConnection && !opts.force) await this.redis.quit().catch(() => undefined);
  }
}
