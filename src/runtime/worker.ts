// Workers: one BullMQ Worker per job, all fed by the process's Dispatcher (dispatch.ts: a fixed number of Redis connections
// whatever the number of jobs). Each attempt mints its own tokens (RunTokenLease), runs the handler inside that
// token's scope, and revokes the tokens the moment the run ends or is aborted (return, throw, timeout, cancel, shutdown,
// lost lock). The rules that make this hold across every worker process live here and in overlap.ts:
// - `concurrency` is BullMQ's global concurrency (kept in Redis), `concurrencyPerWorker` the Worker's own;
// - one live execution per run: a new execution's first token revokes every earlier token of the run, and a token is only
//   registered while its execution holds the run's BullMQ lock; a lost lock aborts the execution here;
// - a run still active at the shutdown deadline is handed back to the queue without consuming an attempt;
// - an aborted handler that ignores its signal keeps its slot until it settles or `runawayGraceMs` has passed.
import { EventEmitter } from 'node:events';
import { inspect } from 'node:util';
import { DelayedError, MetricsTime, UnrecoverableError, WaitingChildrenError, type Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  ChildRunError,
  LockLostError,
  ParamsError,
  ScopeError,
  RunCancelledError,
  RunMisfireError,
  RunSkippedError,
  RunTimeoutError,
} from '../errors.ts';
import type { ChildTriggerOptions, JobContext, RegisteredJob, RunInfo, RunOutcome, RunToken, Trigger } from '../interfaces.ts';
import type { Registry } from '../jobs/registry.ts';
import { RUN_FIELDS, type RunMeta } from '../run/redis-keys.ts';
import type { Logger } from '../log.ts';
import type { ServiceClients } from '../http/clients.ts';
import { RunTokenLease } from '../token/lease.ts';
import { tokenLifetime, type TokenMinter } from '../token/mint.ts';
import { redactTokens, redactValue } from '../redact.ts';
import { bindExec } from './exec.ts';
import { Dispatcher, JobWorker } from './dispatch.ts';
import { workerProcessId } from './heartbeat.ts';
import { runInScope, type RunScope } from '../token/scope.ts';
import { greetingOf, RedisErrorLog } from '../redis/connect.ts';
import { attemptSpan, type AttemptSpan } from '../trace.ts';
import type { Alerts, FinishedRun } from '../control/alerts.ts';
import type { Control } from '../control/control.ts';
import { jobOptions, type Queues } from '../control/queues.ts';
import { metaOf, parseRunId, runIdOf, STALL_LIMIT_REASON, stallLimitMessage } from '../run/model.ts';
import { outcomeOfError } from '../run/outcome.ts';

export type { RunOutcome } from '../interfaces.ts';

export interface WorkerDeps {
  registry: Registry;
  /** The control plane: children (ctx.trigger, then, shards) are triggered and waited for through it. */
  control: Control;
  queues: Queues;
  /** Where final outcomes go to be turned into alerts. */
  alerts?: Alerts;
  minter: TokenMinter;
  clients: ServiceClients;
  /** Connection BullMQ workers are built from (maxRetriesPerRequest: null). */
  connection: Redis;
  /** A dedicated connection for the cancel broadcast (a subscribed connection can do nothing else). */
  subscriber: Redis;
  prefix: string;
  tokenMaxLifetimeMs: number;
  /** BullMQ lock duration; the busy queues are checked for stalled runs every half of it. */
  lockDurationMs: number;
  /** How many times in a row a run's worker may die before the run fails (BullMQ's maxStalledCount). */
  maxStalls: number;
  runawayGraceMs: number;
  logger: Logger;
  /** Only run these jobs (default: all). */
  only?: string[];
}

export interface RunEvents {
  'run:start': [{ job: string; runId: string; attempt: number }];
  'run:end': [{ job: string; runId: string; attempt: number; outcome: RunOutcome; durationMs: number }];
  /**
   * The run went back to the queue without consuming an attempt (shutdown), lost its lock to another worker, or finished
   * here after its lock was lost (a Redis outage longer than the lock): its completion was refused and it runs again.
   */
  'run:handback': [{ job: string; runId: string; attempt: number; reason: 'shutdown' | 'lock-lost' | 'completion-refused' }];
  /** This process's stalled-run check put back a run whose worker stopped (crashed, froze past its lock). */
  'run:recovered': [{ job: string; runId: string }];
  /** An aborted handler did not settle within the grace: it still runs, without a token, outside the concurrency limit. */
  'run:runaway': [{ job: string; runId: string; attempt: number }];
  'token:minted': [{ job: string; jti: string }];
  'token:revoked': [{ job: string; jti: string }];
}

/** Aborts the runs still active at the shutdown deadline, so they are handed back. */
class ShutdownError extends Error {
  constructor() {
    super('the worker shut down before the run finished; the run goes back to the queue');
    this.name = 'ShutdownError';
  }
}

/** One execution of a run in this process: abort() ends it (see attempt()). */
interface Execution {
  abort(reason: Error): void;
}

/**
 * How often the busy queues are checked for stalled runs: half the lock, so a crashed worker's run goes back to the queue
 * at most lock + half a lock after the crash (15 s with the default 10 s lock).
 */
function stalledInterval(lockDurationMs: number): number {
  return Math.max(500, Math.floor(lockDurationMs / 2));
}

/** How long a hand-back may wait for Redis (a shutdown must not wait for a Redis that is gone). */
const HAND_BACK_TIMEOUT_MS = 2000;

/** With Redis lost, how long after the shutdown deadline the workers get to wind down before the shutdown goes on. */
const LOST_CLOSE_GRACE_MS = 1000;

/** How long a replace run waits before it looks again whether the runs it replaced have stopped. */
const REPLACE_RECHECK_MS = 250;

/** Rejects as soon as the signal aborts, so a handler that ignores ctx.signal cannot keep its token alive. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** When a scheduler-made run was due: the millis that end its id (`repeat:<scheduler>:<millis>`). */
export function fireTime(bullJob: Pick<Job, 'id' | 'timestamp'>): number {
  const m = /:(\d+)$/.exec(bullJob.id ?? '');
  return m ? Number(m[1]) : bullJob.timestamp;
}

/** Was another run of the queue active at `t`? (Still active, or the latest finished run spans `t`.) */
async function busyAt(queue: Queue, t: number, selfId: string | undefined): Promise<boolean> {
  if ((await queue.getActiveCount()) > 1) return true;
  // The newest finished run of each kind (getJobs takes the range per state), whichever finished last.
  const finished = await queue.getJobs(['completed', 'failed'], 0, 0, false);
  const last = finished.filter(Boolean).sort((a, b) => (b.finishedOn ?? 0) - (a.finishedOn ?? 0))[0];
  return Boolean(last && last.id !== selfId && (last.processedOn ?? Infinity) <= t && (last.finishedOn ?? 0) > t);
}

/** Errors that end the run for good: retrying cannot help. */
function isFinal(reason: unknown, err: unknown): boolean {
  return (
    reason instanceof RunCancelledError ||
    reason instanceof RunSkippedError ||
    reason instanceof RunMisfireError ||
    err instanceof UnrecoverableError
  );
}

/** The error BullMQ records: token-free, unrecoverable when retrying cannot help, its stack's first line naming its class. */
function recordedError(reason: unknown, err: unknown, tokens: string[]): Error {
  const name = reason instanceof Error ? reason.name : 'Error';
  const message = redactTokens(reason instanceof Error ? reason.message : String(reason), tokens);
  const out = isFinal(reason, err) ? new UnrecoverableError(message) : new Error(message);
  out.name = name;
  const frames = reason instanceof Error && reason.stack ? reason.stack.split('\n').filter((l) => /^\s+at /.test(l)) : [];
  out.stack = redactTokens([`${name}: ${message}`, ...frames].join('\n'), tokens);
  return out;
}

/** The RFC 8693 actor claim for who triggered a run: a person, the CLI, a client, or a parent run (its job and run id). */
export function actorOf(by: string | undefined): { sub: string; run?: string } | undefined {
  if (!by || by === 'schedule') return undefined;
  if (by.startsWith('run:')) {
    const parent = by.slice(4);
    return { sub: `job:${parseRunId(parent).job}`, run: parent };
  }
  return { sub: by };
}

/** A shard run's BullMQ id: derived from its parent's, so fanning out twice adds nothing (ids cannot contain ':'). */
function shardId(parentId: string, index: number): string {
  return `${parentId.replace(/:/g, '_')}-shard-${index}`;
}

/**
 * Hands final outcomes to the alerts, at most one call in flight per job. Each call reads and writes the job's last
 * outcome in Redis (two commands, on the control connection, per run); a 'completed' that follows a 'completed' still
 * waiting its turn would read 'completed' and write it again, so it is folded into it. Failures, timeouts and the other
 * outcomes are each passed on, in order.
 */
class OutcomeFeed {
  private readonly alerts: Alerts;
  private readonly perJob = new Map<string, { busy: boolean; queue: FinishedRun[]; last: string }>();
  constructor(alerts: Alerts) {
    this.alerts = alerts;
  }
  push(run: FinishedRun): void {
    let state = this.perJob.get(run.job.name);
    if (!state) this.perJob.set(run.job.name, (state = { busy: false, queue: [], last: '' }));
    if (state.busy && run.outcome === 'completed' && (state.queue.at(-1)?.outcome ?? state.last) === 'completed') return;
    state.queue.push(run);
    this.next(run.job.name, state);
  }
  private next(job: string, state: { busy: boolean; queue: FinishedRun[]; last: string }): void {
    if (state.busy) return;
    const run = state.queue.shift();
    if (!run) return void this.perJob.delete(job);
    state.busy = true;
    state.last = run.outcome;
    void this.alerts.finished(run).finally(() => {
      state.busy = false;
      this.next(job, state);
    });
  }
}

type RunLog = Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;

/** The run's logger: a child with the run's bindings, built on the first line that is actually logged (most are not). */
function runLog(logger: Logger, bindings: Record<string, unknown>): RunLog {
  let child: Logger | undefined;
  const get = () => (child ??= logger.child(bindings));
  const at = (level: 'info' | 'warn' | 'error' | 'debug') =>
    ((...args: unknown[]) => {
      if (logger.isLevelEnabled(level)) (get()[level] as (...a: unknown[]) => void)(...args);
    }) as Logger['info'];
  return { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
}

/** `ctx.token`: the scope's current tokens (re-mints included). Prints and serialises as claims only. */
export class ScopedToken implements RunToken {
  readonly #scope: RunScope;
  constructor(scope: RunScope) {
    this.#scope = scope;
  }
  get claims() {
    return this.#scope.tokens.primary.claims;
  }
  get all() {
    return this.#scope.tokens.held().map((t) => t.claims);
  }
  reveal(audience?: string): string {
    if (audience === undefined || audience === this.#scope.tokens.audiences[0]) return this.#scope.tokens.primary.raw;
    const held = this.#scope.tokens.held().find((t) => t.claims.aud.includes(audience));
    if (!held) throw new ScopeError(`no token for "${audience}" yet: it is minted on the first ctx.service('${audience}') call`);
    return held.raw;
  }
  toJSON() {
    return { claims: this.claims, all: this.all };
  }
  [inspect.custom]() {
    return `RunToken ${inspect(this.claims)}`;
  }
}

export class Workers extends EventEmitter<RunEvents> {
  readonly workers = new Map<string, JobWorker>();
  private readonly deps: WorkerDeps;
  private readonly shutdown = new AbortController();
  /** This process's executions by run id: a lost lock aborts the one it belongs to. */
  private readonly executions = new Map<string, Execution>();
  /** Every execution in progress here (a run id can have an older one still settling): shutdown aborts them all. */
  private readonly live = new Set<Execution>();
  /** The definition each worker runs (a reload replaces a worker whose definition changed). */
  private readonly definitions = new Map<string, RegisteredJob>();
  /** Workers replaced by a reload, finishing their runs. */
  private readonly retiring = new Set<JobWorker>();
  private readonly dispatcher: Dispatcher;
  /** This process in the executor registry (the heartbeat) and in the name of its dispatcher's connection. */
  readonly processId = workerProcessId();
  private served: string[] = [];
  private readonly outcomes: OutcomeFeed | undefined;
  /**
   * The process's Redis log (the control plane's, which every connection of the process reports into): BullMQ workers'
   * errors are logged once per reason, an outage once when lost, every 30 s while it lasts and once when back.
   */
  private readonly redisErrors: RedisErrorLog;
  /** Runs that a shutdown could not hand back (Redis unreachable): the stalled-run check recovers them once it is back. */
  private readonly unreturned = new Set<string>();
  /** Runs that ended here while Redis was lost, and when: their outcome waits in the connection's queue until it is back. */
  private readonly endedWhileLost = new Map<string, number>();

  constructor(deps: WorkerDeps) {
    super();
    this.deps = deps;
    this.outcomes = deps.alerts && new OutcomeFeed(deps.alerts);
    this.redisErrors = deps.control.redisLog ?? new RedisErrorLog(deps.logger, { probe: () => greetingOf(deps.connection) });
    this.dispatcher = new Dispatcher({
      processId: this.processId,
      connection: deps.connection,
      keys: deps.queues.keys,
      stalledIntervalMs: stalledInterval(deps.lockDurationMs),
      onError: (err, context) => this.redisErrors.note(err, context, 'worker error'),
    });
    this.shutdown.signal.addEventListener('abort', () => {
      for (const execution of this.live) execution.abort(new ShutdownError());
    });
    this.on('run:end', ({ runId }) => {
      const lostAt = this.redisErrors.state().lostAt;
      if (lostAt === undefined) return;
      for (const [id, at] of this.endedWhileLost) if (at < lostAt) this.endedWhileLost.delete(id); // an earlier outage's
      this.endedWhileLost.set(runId, Date.now());
    });
  }

  async start(): Promise<void> {
    const { registry, logger, subscriber, queues } = this.deps;
    await this.serve(this.deps.only ?? registry.names);
    subscriber.on('message', (channel, message) => {
      if (channel !== queues.cancelChannel) return;
      try {
        const { job, id, reason } = JSON.parse(message) as { job: string; id: string; reason?: string };
        // The current worker of the job, or one retiring after a reload (its runs finish on the old code).
        const candidates = [this.workers.get(job), ...[...this.retiring].filter((w) => w.name === job)];
        if (candidates.some((w) => w?.cancelJob(id, reason ?? 'cancelled'))) {
          logger.info({ job, run: runIdOf(job, id) }, 'run cancel requested');
        }
      } catch {
        logger.warn('ignored a malformed cancel message');
      }
    });
    await subscriber.subscribe(queues.cancelChannel);
  }

  /**
   * Serves exactly these jobs with the registry's current definitions: starts workers for new ones, and for changed or
   * removed ones retires the old worker (it takes no new run; runs in progress finish on the old code).
   */
  async serve(names: string[]): Promise<void> {
    const { registry, logger } = this.deps;
    for (const [name, worker] of this.workers) {
      if (names.includes(name) && registry.has(name) && this.definitions.get(name) === registry.get(name)) continue;
      this.workers.delete(name);
      this.definitions.delete(name);
      this.retiring.add(worker);
      void this.dispatcher
        .retire(worker)
        .then(() => worker.close())
        .catch((err: Error) => logger.error({ job: name, err: err.message }, 'could not close a retired worker'))
        .finally(() => this.retiring.delete(worker));
      logger.info(
        { job: name },
        names.includes(name) && registry.has(name) ? 'job changed: new runs use the new code' : 'job removed here',
      );
    }
    const started = await Promise.all(names.filter((name) => !this.workers.has(name)).map((name) => this.startJob(registry.get(name))));
    // Given to the dispatcher together, so its wait starts over every new job at once (not once per job).
    for (const job of started) this.dispatcher.serve(job.name, this.workers.get(job.name)!, job.concurrencyPerWorker, job.concurrency);
    this.served = names;
    await Promise.all([...this.workers.values()].map((w) => w.waitUntilReady()));
  }

  /** The jobs this process serves now. */
  get jobs(): string[] {
    return this.served;
  }

  /** The job's BullMQ worker with its listeners, and its limits written to Redis; serve() hands it to the dispatcher. */
  private async startJob(job: RegisteredJob): Promise<RegisteredJob> {
    const { connection, prefix, logger, queues, lockDurationMs, maxStalls } = this.deps;
    const { name } = job;
    const queue = queues.queue(name);
    // Limits kept in Redis hold for every worker process of the job, however many there are.
    await queue.setGlobalConcurrency(job.concurrency);
    await (job.rateLimit ? queue.setGlobalRateLimit(job.rateLimit.max, job.rateLimit.durationMs) : queue.removeGlobalRateLimit());
    const worker = new JobWorker(name, (bullJob: Job, lock?: string, signal?: AbortSignal) => this.attempt(job, bullJob, lock, signal), {
      connection,
      prefix,
      concurrency: job.concurrencyPerWorker,
      lockDuration: lockDurationMs,
      // BullMQ's fleet-wide throttle of the check (a key that lives this long): shorter than the dispatcher's period, or a
      // check that comes a few ms early finds the previous one's key and is skipped (a crashed run then waited 17 s, not 15).
      stalledInterval: Math.floor(stalledInterval(lockDurationMs) * 0.8),
      // A run whose worker dies is put back in the queue up to this many times in a row (BullMQ's default is once).
      maxStalledCount: maxStalls,
      // Per-minute completed/failed counts for Bull Board's metrics tab.
      metrics: { maxDataPoints: MetricsTime.ONE_WEEK },
    });
    worker.on('error', (err) => this.workerError(name, err));
    worker.on('stalled', (id) => {
      logger.warn(
        { job: name, run: runIdOf(name, id) },
        'recovered a stalled run: its worker stopped (crashed or froze past its lock); it runs again',
      );
      this.emit('run:recovered', { job: name, runId: runIdOf(name, id) });
    });
    worker.on('failed', (bullJob, err) => {
      if (bullJob && err.message === STALL_LIMIT_REASON) void this.stalledOut(job, bullJob);
    });
    worker.on('lockRenewalFailed', (ids) => {
      for (const id of ids) this.executions.get(runIdOf(name, id))?.abort(new LockLostError(runIdOf(name, id)));
    });
    this.workers.set(name, worker);
    this.definitions.set(name, job);
    return job;
  }

  /** A BullMQ worker's error: a completion refused for a lost lock is the run's news, not the worker's. */
  private workerError(job: string, err: Error): void {
    const refused = /^Missing lock for job (\S+)\. moveToFinished/.exec(err.message);
    if (!refused) return this.redisErrors.note(err, { job }, 'worker error');
    const runId = runIdOf(job, refused[1]);
    this.deps.logger.warn(
      { job, run: runId },
      'run finished here, but its lock was lost meanwhile (Redis unreachable for longer than JOBSCOPE_LOCK_DURATION): its result was refused and the run runs again',
    );
    this.emit('run:handback', { job, runId, attempt: 0, reason: 'completion-refused' });
  }

  /** A run whose workers died more than maxStalls times in a row: BullMQ failed it; it is a final failure like any other. */
  private async stalledOut(job: RegisteredJob, bullJob: Job): Promise<void> {
    const runId = runIdOf(job.name, bullJob.id);
    const error = stallLimitMessage(this.deps.maxStalls);
    this.deps.logger.error({ job: job.name, run: runId, maxStalls: this.deps.maxStalls }, `run failed: ${error}`);
    await bullJob.log(error).catch(() => undefined);
    const attempts = Math.max(1, bullJob.attemptsMade);
    this.emit('run:end', { job: job.name, runId, attempt: attempts, outcome: 'failed', durationMs: 0 });
    this.outcomes?.push({ job, runId, outcome: 'failed', error, attempts, durationMs: 0 });
  }

  /** One attempt of one run: validate -> schedule rules -> overlap rules -> lease -> run in scope -> finally revoke. */
  async attempt(job: RegisteredJob, bullJob: Job, lock: string | undefined, bullSignal?: AbortSignal): Promise<unknown> {
    const { minter, clients, logger, tokenMaxLifetimeMs } = this.deps;
    const attempt = bullJob.attemptsMade + 1;
    const origin = (bullJob.name || 'api') as Trigger;
    // A run handed back (shutdown) or recovered from a stall starts again without having made an attempt.
    const firstStart = bullJob.attemptsMade === 0 && (bullJob.attemptsStarted ?? 1) <= 1;
    const meta = metaOf(bullJob);
    const run: RunInfo = {
      id: runIdOf(job.name, bullJob.id),
      job: job.name,
      attempt,
      trigger: attempt > 1 ? 'retry' : origin,
      // After a Retry, the attempts are the retrier's doing (the run's first trigger stays in the run's report).
      triggeredBy: meta.retriedBy ?? meta.by ?? (origin === 'schedule' ? 'schedule' : 'api'),
      ...(meta.parent ? { parent: meta.parent } : {}),
    };
    const log = runLog(logger, { job: job.name, run: run.id, attempt });
    const started = Date.now();
    // Tracing (trace.ts): the run's and this attempt's spans, from the lease on (end() may run before, for a refusal).
    // eslint-disable-next-line prefer-const
    let traced: AttemptSpan | undefined;
    const end = (outcome: RunOutcome, final = false, error: string | null = null) => {
      const durationMs = Date.now() - started;
      traced?.end(outcome, final);
      this.emit('run:end', { job: job.name, runId: run.id, attempt, outcome, durationMs });
      if (final) this.outcomes?.push({ job, runId: run.id, outcome, error, attempts: attempt, durationMs });
    };
    /** Ends the run without running it (skipped, misfire, bad data): recorded with its outcome, never retried. */
    const refuse = async (reason: Error): Promise<never> => {
      await bullJob.log(reason.message);
      log.info({ outcome: outcomeOfError(reason), reason: reason.message }, 'run not started');
      end(outcomeOfError(reason), true, reason.message);
      await this.deps.connection
        .hset(this.deps.queues.keys.bullJob(job.name, bullJob.id!), RUN_FIELDS.outcome, outcomeOfError(reason))
        .catch(() => 0);
      throw recordedError(reason, new UnrecoverableError(reason.message), []);
    };

    // Data may come from Bull Board's "Add job" or an older schema: the handler only ever sees valid data. (BullMQ parses
    // the data afresh for each attempt, so validation's defaults never leak into the stored job.)
    const data = (bullJob.data ?? {}) as Record<string, unknown>;
    const issues = job.validate(data);
    if (issues) await refuse(new ParamsError(job.name, issues));

    if (origin === 'schedule' && firstStart) {
      const verdict = await this.checkFire(job, bullJob);
      if (verdict instanceof Error) await refuse(verdict);
      if (verdict === 'late') {
        run.trigger = 'misfire';
        await this.deps.connection.hset(this.deps.queues.keys.bullJob(job.name, bullJob.id!), RUN_FIELDS.trigger, 'misfire');
        await bullJob.log(`misfire: started ${((Date.now() - fireTime(bullJob)) / 1000).toFixed(1)} s after its due time; run once`);
      }
    }
    // A shard is part of its parent's run: the parent passed the schedule and overlap rules for all of them.
    if (job.overlap !== 'queue' && !meta.shard) {
      const verdict = await this.checkOverlap(job, bullJob, origin === 'schedule' && firstStart);
      if (verdict === 'wait') return this.handBack(bullJob, lock, log, run, 'replace', Date.now() + REPLACE_RECHECK_MS);
      if (verdict) await refuse(verdict);
    }

    if (job.shards !== undefined && !meta.shard) return this.broadcast(job, bullJob, lock, run, log, end);

    traced = attemptSpan(run, meta.traceparent);
    const lease = new RunTokenLease(
      minter,
      {
        job: job.name,
        run: run.id,
        attempt,
        audience: job.audience,
        scope: job.scope,
        lifetimeMs: tokenLifetime(job.timeoutMs, tokenMaxLifetimeMs),
        act: actorOf(meta.retriedBy ?? meta.by),
      },
      log,
      {
        minted: (t) => this.emit('token:minted', { job: job.name, jti: t.claims.jti }),
        revoked: (jti) => this.emit('token:revoked', { job: job.name, jti }),
        lost: (err) => abort(err),
      },
      lock ? { key: this.deps.queues.keys.bullLock(job.name, bullJob.id!), token: lock } : undefined,
    );
    // Every way a run is aborted (timeout, cancel, shutdown, lost lock) goes through abort(): it aborts ctx.signal, closes the
    // scope and revokes the tokens at once (even while a handler that ignores its signal goes on running), and ends the
    // wait for the handler. Called directly rather than through event listeners: one AbortController per run, no more.
    const controller = new AbortController();
    const { signal } = controller;
    let scope: RunScope | undefined;
    let stopWaiting: (reason: unknown) => void = () => {};
    const aborted = new Promise<never>((_, reject) => (stopWaiting = reject));
    aborted.catch(() => undefined);
    const execution: Execution = {
      abort: (reason: Error) => {
        if (signal.aborted) return;
        controller.abort(reason);
        if (scope) scope.open = false;
        lease.close().catch((err: Error) => log.error({ err: err.message }, 'could not revoke the run token; it dies at its expiry'));
        stopWaiting(reason);
      },
    };
    const abort = execution.abort;
    const onCancel = () => abort(new RunCancelledError(String(bullSignal?.reason ?? 'cancelled')));
    bullSignal?.addEventListener('abort', onCancel, { once: true });
    this.executions.set(run.id, execution);
    this.live.add(execution);
    const timer = job.timeoutMs ? setTimeout(() => abort(new RunTimeoutError(job.timeoutMs!)), job.timeoutMs) : undefined;
    // A scheduled fire of a replace job replaces this run when it is due, not when it could start (with concurrency 1 it
    // cannot start while this run holds the slot).
    const stopWatching = job.overlap === 'replace' && job.schedule && !meta.shard ? this.replaceAtNextFire(job) : undefined;

    if (this.shutdown.signal.aborted) abort(new ShutdownError());
    // A cancel that reached BullMQ while the rules above ran has already fired its event.
    if (bullSignal?.aborted) onCancel();

    this.emit('run:start', { job: job.name, runId: run.id, attempt });
    log.info({ trigger: run.trigger }, 'run started');
    let handler: Promise<unknown> | undefined;
    try {
      await lease.start();
      scope = { run, signal, tokens: lease, open: !signal.aborted, trace: traced?.context };
      const ctx = this.context(job, scope, data, bullJob, lease.raws, clients, meta);
      handler = runInScope(scope, async () => job.definition.run(ctx));
      const result = redactValue(await Promise.race([handler, aborted]), lease.raws);
      log.info({ ms: Date.now() - started }, 'run completed');
      await this.startThen(job, run, result, bullJob, log);
      end('completed', true);
      return result;
    } catch (err) {
      const reason: unknown = signal.aborted ? signal.reason : err;
      if (reason instanceof ShutdownError) return await this.handBack(bullJob, lock, log, run, 'shutdown');
      if (reason instanceof LockLostError) return await this.handBack(bullJob, undefined, log, run, 'lock-lost');
      // An aborted handler keeps its slot (the run stays active) until it settles, so real work never exceeds concurrency.
      if (handler && signal.aborted) await this.settle(handler, job, run, log);
      const recorded = recordedError(reason, err, lease.raws);
      const outcome = outcomeOfError(reason);
      log.warn({ ms: Date.now() - started, outcome, error: recorded.message }, 'run failed');
      end(outcome, isFinal(reason, err) || attempt >= job.attempts, recorded.message);
      await this.deps.connection.hset(this.deps.queues.keys.bullJob(job.name, bullJob.id!), RUN_FIELDS.outcome, outcome).catch(() => 0);
      throw recorded;
    } finally {
      if (scope) scope.open = false;
      traced?.close();
      clearTimeout(timer);
      stopWatching?.();
      bullSignal?.removeEventListener('abort', onCancel);
      this.live.delete(execution);
      if (this.executions.get(run.id) === execution) this.executions.delete(run.id);
      // Revoke even when the handler is still running in the background (it ignored the abort): its calls now fail.
      await lease.close().catch((err: Error) => log.error({ err: err.message }, 'could not revoke the run token; it dies at its expiry'));
    }
  }

  /** Starts the jobs of `then` after a success. A step whose data does not fit its job is logged on this run, not started. */
  private async startThen(job: RegisteredJob, run: RunInfo, result: unknown, bullJob: Job, log: RunLog): Promise<void> {
    for (const [i, step] of job.then.entries()) {
      let data: unknown;
      try {
        data = step.data ? step.data(result, run) : (result ?? {});
      } catch (err) {
        await bullJob.log(`then: ${step.job} not started: its data mapping threw: ${(err as Error).message}`);
        continue;
      }
      try {
        // The key makes a repeated completion (a lost lock, a crash after the handler) start each child once.
        const { runId } = await this.deps.control.trigger(step.job, data, {
          trigger: 'parent',
          by: `run:${run.id}`,
          parent: run.id,
          key: `then:${run.id}:${i}`,
        });
        await bullJob.log(`then: started ${runId}`);
      } catch (err) {
        await bullJob.log(`then: ${step.job} not started: ${(err as Error).message}`);
        log.warn({ child: step.job, err: (err as Error).message }, 'then: child not started');
      }
    }
  }

  /**
   * A run of a sharded job: fans out one shard run per index as BullMQ children of this run, waits for them (without
   * holding a slot), then completes with their results in index order, or fails naming the shards that failed. Each
   * shard is a run of its own: its own token, its own retries.
   */
  private async broadcast(
    job: RegisteredJob,
    bullJob: Job,
    lock: string | undefined,
    run: RunInfo,
    log: RunLog,
    end: (outcome: RunOutcome, final?: boolean, error?: string | null) => void,
  ): Promise<unknown> {
    const { queues } = this.deps;
    const deps = await bullJob.getDependenciesCount();
    if (Object.values(deps).every((n) => !n)) {
      const total = job.shards === 'workers' ? await this.deps.control.workersServing(job.name) : job.shards!;
      if (total < 1) {
        const err = new UnrecoverableError(`shards: 'workers': no live worker serves ${job.name}`);
        end('failed', true, err.message);
        throw err;
      }
      const parent = { id: bullJob.id!, queue: bullJob.queueQualifiedName };
      const shards = Array.from({ length: total }, (_, index) => ({
        name: 'shard',
        data: bullJob.data as unknown,
        opts: {
          ...jobOptions(job),
          jobId: shardId(bullJob.id!, index),
          parent,
          // A failed shard does not stop the others; this run then fails naming it.
          ignoreDependencyOnFailure: true,
          jobscope: { by: `run:${run.id}`, parent: run.id, shard: { index, total } } satisfies RunMeta,
        },
      }));
      await queues.queue(job.name).addBulk(shards);
      for (const shard of shards) await queues.addChild(run.id, runIdOf(job.name, shard.opts.jobId));
      await bullJob.log(`broadcast: ${total} shard run(s)`);
      log.info({ shards: total }, 'broadcast: shard runs started');
      if (lock && (await bullJob.moveToWaitingChildren(lock))) throw new WaitingChildrenError();
    }
    const indexOf = (key: string) => Number(/-shard-(\d+)$/.exec(key)?.[1] ?? -1);
    const [values, failures] = await Promise.all([bullJob.getChildrenValues(), bullJob.getIgnoredChildrenFailures()]);
    const failed = Object.entries(failures).map(([key, reason]) => ({ index: indexOf(key), reason }));
    if (failed.length) {
      failed.sort((a, b) => a.index - b.index);
      const message = `shard(s) ${failed.map((f) => f.index).join(', ')} failed: ${failed.map((f) => `#${f.index} ${f.reason}`).join('; ')}`;
      end('failed', true, message);
      throw new UnrecoverableError(message);
    }
    const results: unknown[] = [];
    for (const [key, value] of Object.entries(values)) results[indexOf(key)] = value;
    end('completed', true);
    return results;
  }

  /** Runs active in this process (for the heartbeat). */
  activeRuns(): string[] {
    return [...this.executions.keys()];
  }

  /** A scheduled fire: is it still in the code and in Redis, and on time? 'late' runs once as a misfire. */
  private async checkFire(job: RegisteredJob, bullJob: Job): Promise<Error | 'late' | null> {
    if (!job.schedule) return new RunSkippedError('the job file no longer has a schedule');
    // Gone from Redis: removed by a newer version of the job file (scheduler sync) or paused.
    if (!(await this.deps.queues.queue(job.name).getJobScheduler(job.name))) return new RunSkippedError('its schedule was removed');
    const lateMs = Date.now() - fireTime(bullJob);
    if (lateMs <= job.misfireGraceMs) return null;
    return job.misfire === 'once' ? 'late' : new RunMisfireError(lateMs, job.misfireGraceMs);
  }

  /**
   * overlap 'skip': a scheduled fire is skipped when another run was active at its due time or counts now (a trigger was
   * refused at enqueue instead). 'replace': a scheduled fire reserves its place as the newest run and cancels the others;
   * a run reserved before another one that still counts has been replaced and ends cancelled without running (however
   * the triggers raced: see overlap.ts); every other replace run waits ('wait') until the runs it replaced have stopped, so
   * two never run at once, whatever the job's concurrency.
   */
  private async checkOverlap(job: RegisteredJob, bullJob: Job, scheduledFirst: boolean): Promise<Error | 'wait' | null> {
    const { queues } = this.deps;
    const id = bullJob.id!;
    if (job.overlap === 'skip') {
      if (!scheduledFirst) return null;
      if (await busyAt(queues.queue(job.name), fireTime(bullJob), id)) {
        return new RunSkippedError('another run of this job was active at its due time (overlap: skip)');
      }
      const claim = await queues.overlap.claim(job.name, id, 'skip');
      return claim.ok
        ? null
        : new RunSkippedError(`another run is waiting, delayed or active (overlap: skip): ${runIdOf(job.name, claim.others[0])}`);
    }
    const claim = await queues.overlap.claim(job.name, scheduledFirst ? id : '', 'replace', id);
    if (claim.newer) return new RunCancelledError(`replaced by a newer run: ${runIdOf(job.name, claim.newer)}`);
    if (scheduledFirst) {
      await Promise.all(claim.others.map((o) => queues.cancel(runIdOf(job.name, o), 'replaced by a scheduled run').catch(() => undefined)));
    }
    const states = await Promise.all(claim.others.map((o) => queues.queue(job.name).getJobState(o)));
    return states.includes('active') ? 'wait' : null;
  }

  /**
   * At the schedule's next fire, reserves that fire's run as the newest of a replace job and cancels the runs before it
   * (this one included): the fire then starts as soon as they have stopped. Returns what stops watching.
   */
  private replaceAtNextFire(job: RegisteredJob): () => void {
    const { queues } = this.deps;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const fire = async (fireId: string) => {
      // The schedule changed or was paused since: that fire will not come.
      if (stopped || !(await queues.queue(job.name).getJob(fireId))) return;
      const claim = await queues.overlap.claim(job.name, fireId, 'replace');
      await Promise.all(claim.others.map((o) => queues.cancel(runIdOf(job.name, o), 'replaced by a scheduled run').catch(() => undefined)));
    };
    queues
      .queue(job.name)
      .getJobScheduler(job.name)
      .then((scheduler) => {
        const next = scheduler?.next;
        if (stopped || !next) return;
        timer = setTimeout(() => void fire(`repeat:${job.name}:${next}`).catch(() => undefined), Math.max(0, next - Date.now()));
      })
      .catch(() => undefined);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  /** Waits for an aborted handler to settle, at most the runaway grace; past it, reports a runaway. */
  private async settle(handler: Promise<unknown>, job: RegisteredJob, run: RunInfo, log: RunLog): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), this.deps.runawayGraceMs)));
    const settled = handler.then(
      () => 'settled' as const,
      () => 'settled' as const,
    );
    try {
      if ((await Promise.race([settled, graceOver])) === 'late') {
        log.error(
          { graceMs: this.deps.runawayGraceMs },
          'runaway: the handler ignored ctx.signal and is still running (without a token); its concurrency slot is released',
        );
        this.emit('run:runaway', { job: job.name, runId: run.id, attempt: run.attempt });
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Puts the run back in the queue without consuming an attempt (shutdown, or a replace run whose predecessors still
   * run): as late as `untilMs` when given. After a lost lock the run is already another worker's: nothing to move.
   * The processor then throws DelayedError, which BullMQ takes as "handled elsewhere".
   */
  private async handBack(
    bullJob: Job,
    lock: string | undefined,
    log: RunLog,
    run: RunInfo,
    reason: 'shutdown' | 'lock-lost' | 'replace',
    untilMs?: number,
  ): Promise<never> {
    if (reason === 'lock-lost') {
      log.warn('run lost its lock (another worker has it now): this execution was aborted and its tokens revoked');
    } else if (reason === 'shutdown' && this.redisErrors.lost) {
      // Nothing can be said to Redis: the shutdown names the run (close()); its lock expires and another worker takes it.
      this.unreturned.add(run.id);
    } else {
      let timer: NodeJS.Timeout | undefined;
      try {
        // Bounded: Redis may go away during the call, and a shutdown must not wait for it.
        const late = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer from Redis within ${HAND_BACK_TIMEOUT_MS} ms`)), HAND_BACK_TIMEOUT_MS);
        });
        await Promise.race([untilMs ? bullJob.moveToDelayed(untilMs, lock) : bullJob.moveToWait(lock), late]);
        if (reason === 'shutdown') log.info('run handed back: the worker is shutting down; another worker takes it over');
      } catch (err) {
        if (reason === 'shutdown') this.unreturned.add(run.id);
        log.warn({ err: (err as Error).message }, 'could not hand the run back; it is recovered when its lock expires');
      } finally {
        clearTimeout(timer);
      }
    }
    if (reason !== 'replace') this.emit('run:handback', { job: run.job, runId: run.id, attempt: run.attempt, reason });
    throw new DelayedError();
  }

  private context(
    job: RegisteredJob,
    scope: RunScope,
    data: Record<string, unknown>,
    bullJob: Job,
    raws: string[],
    clients: ServiceClients,
    meta: RunMeta,
  ): JobContext {
    const { control } = this.deps;
    const run = scope.run;
    const token = new ScopedToken(scope);
    // Each child is keyed by this run, its attempt and the call's place in it: an execution that starts again after a
    // hand-back or a crash (same attempt) gets the children the first one started, and their results, never second ones.
    let calls = 0;
    const trigger = async (name: string, childData?: unknown, opts: ChildTriggerOptions = {}): Promise<string> => {
      if (!scope.open) throw new ScopeError(`run ${run.id} has ended: it cannot start runs`);
      const { delay, at, priority, key } = opts;
      const call = calls++;
      const { runId } = await control.trigger(name, childData ?? {}, {
        delay,
        at,
        priority,
        key: key ?? `child:${run.id}:${run.attempt}:${call}`,
        trigger: 'parent',
        by: `run:${run.id}`,
        parent: run.id,
      });
      return runId;
    };
    const services = new Map<string, ReturnType<ServiceClients['service']>>();
    let http: ReturnType<ServiceClients['http']> | undefined;
    return {
      data,
      run: scope.run,
      signal: scope.signal,
      token,
      log: async (line: string) => {
        await bullJob.log(redactTokens(String(line), raws));
      },
      progress: async (value: number | object) => {
        await bullJob.updateProgress(redactValue(value, raws));
      },
      service: (name: string) => {
        let client = services.get(name);
        if (!client) services.set(name, (client = clients.service(name, scope.run.id, scope.signal)));
        return client;
      },
      get http() {
        return (http ??= clients.http(scope.run.id, scope.signal));
      },
      shard: meta.shard ?? null,
      exec: bindExec({ scope, shard: meta.shard ?? null, raws, services: clients.urls, log: (line) => bullJob.log(line) }),
      trigger,
      triggerAndWait: async <R>(name: string, childData?: unknown, opts?: ChildTriggerOptions): Promise<R> => {
        // This run holds its own slot while it waits: a child of the same serial job could never start.
        if (name === job.name && job.concurrency === 1) {
          throw new ScopeError(`ctx.triggerAndWait('${name}') inside a run of ${name} (concurrency 1) would wait forever; use ctx.trigger`);
        }
        const childId = await trigger(name, childData, opts);
        // This run's timeout or cancel reaches the child it waits for. A hand-back (shutdown, lost lock) does not: the run
        // starts again elsewhere and waits for the same child.
        const onAbort = () => {
          const reason: unknown = scope.signal.reason;
          if (!(reason instanceof RunCancelledError || reason instanceof RunTimeoutError)) return;
          void control
            .cancel(childId, `its parent ${run.id} was aborted (${reason instanceof RunTimeoutError ? 'timed out' : 'cancelled'})`)
            .catch(() => undefined);
        };
        scope.signal.addEventListener('abort', onAbort, { once: true });
        try {
          const report = await Promise.race([control.waitForRun(childId), untilAborted(scope.signal)]);
          if (report.outcome !== 'completed') throw new ChildRunError(childId, report.outcome ?? report.state, report.error);
          return report.result as R;
        } finally {
          scope.signal.removeEventListener('abort', onAbort);
        }
      },
    };
  }

  /**
   * Stops taking work; lets active runs finish until the deadline, then aborts them (their tokens are revoked) and hands
   * them back. With Redis lost, nothing can be handed back or closed cleanly: past the deadline and a short grace the
   * shutdown goes on, naming the runs it could not hand back (their locks expire; the stalled-run check recovers them).
   */
  async close(deadlineMs: number): Promise<void> {
    let giveUp: NodeJS.Timeout | undefined;
    let late: (value: 'late') => void = () => {};
    const lateClose = new Promise<'late'>((resolve) => (late = resolve));
    const abortRuns = setTimeout(() => {
      this.shutdown.abort();
      // BullMQ's close can wait forever on a blocking connection caught in its reconnect back-off (after a Redis restart, or
      // while Redis is down): past a grace for aborted runs to record their outcome, shutdown goes on without it.
      giveUp = setTimeout(() => late('late'), this.redisErrors.lost ? LOST_CLOSE_GRACE_MS : 3000);
    }, deadlineMs);
    // Redis lost and nothing running here: nothing to wait for (no run can finish, none can be taken).
    if (this.redisErrors.lost && this.executions.size === 0) giveUp = setTimeout(() => late('late'), LOST_CLOSE_GRACE_MS);
    try {
      const closed = this.dispatcher
        .close()
        .then(() => Promise.all([...this.workers.values(), ...this.retiring].map((w) => w.close())))
        .then(() => 'closed' as const);
      if ((await Promise.race([closed, lateClose])) === 'late') {
        if (this.redisErrors.lost) {
          this.deps.logger.warn({ redis: 'lost' }, 'workers cannot close cleanly while Redis is unreachable; continuing the shutdown');
        } else this.deps.logger.warn('workers did not close within the shutdown deadline; continuing the shutdown');
      }
    } finally {
      clearTimeout(abortRuns);
      clearTimeout(giveUp);
    }
    const left = [...new Set([...this.unreturned, ...this.executions.keys()])];
    // Finished here during this outage: their outcome never reached Redis, so they run again like the others.
    const lostAt = this.redisErrors.state().lostAt ?? Infinity;
    const unrecorded = [...this.endedWhileLost].filter(([id, at]) => at >= lostAt && !left.includes(id)).map(([id]) => id);
    if (left.length || unrecorded.length) {
      const lost = this.redisErrors.lost;
      this.deps.logger.warn(
        { runs: left, ...(unrecorded.length ? { unrecorded } : {}), redis: lost ? 'lost' : 'up' },
        `shutdown could not hand back ${left.length} run(s)${left.length ? ` (${left.join(', ')})` : ''}` +
          (unrecorded.length
            ? ` nor record the outcome of ${unrecorded.length} run(s) that finished here meanwhile (${unrecorded.join(', ')})`
            : '') +
          `${lost ? ': Redis is unreachable' : ''}. Nothing is lost: once Redis answers, their locks expire and the ` +
          'stalled-run check gives them to another worker (a run that had finished runs again)',
      );
    }
  }
}
