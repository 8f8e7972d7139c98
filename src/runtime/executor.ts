// The run executor: executes the runs of every job this worker process serves. Each job has a QueueTaker (a BullMQ Worker
// driven by the process's Dispatcher, dispatch.ts: a fixed number of Redis connections whatever the number of jobs); each
// run it takes is one attempt, in three steps: admit (admission.ts) -> execute (execution.ts) -> record (run/record.ts).
// Each execution mints its own tokens (RunTokenLease), runs the handler inside that token's scope, and revokes the tokens
// the moment the run ends or is aborted (return, throw, timeout, cancel, shutdown, lost lock). The rules that make this
// hold across every worker process live here and in control/overlap.ts:
// - `concurrency` is BullMQ's global concurrency (kept in Redis), `concurrencyPerWorker` the QueueTaker's own;
// - one live execution per run: a new execution's first token revokes every earlier token of the run, and a token is only
//   registered while its execution holds the run's BullMQ lock; a lost lock aborts the execution here;
// - a run still active at the shutdown deadline is handed back to the queue without consuming an attempt;
// - an aborted handler that ignores its signal keeps its slot until it settles or `runawayGraceMs` has passed.
import { EventEmitter } from 'node:events';
import { DelayedError, MetricsTime, WaitingChildrenError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { LockLostError } from '../errors.ts';
import type { RegisteredJob } from '../interfaces.ts';
import type { Registry } from '../jobs/registry.ts';
import type { Logger } from '../log.ts';
import type { ServiceClients } from '../http/clients.ts';
import type { TokenMinter } from '../token/mint.ts';
import { greetingOf, RedisErrorLog } from '../redis/connect.ts';
import type { Alerts, FinishedRun } from '../control/alerts.ts';
import type { Control } from '../control/control.ts';
import type { Queues } from '../control/queues.ts';
import { runIdOf, STALL_LIMIT_REASON, stallLimitMessage } from '../run/model.ts';
import { outcomeOfError } from '../run/outcome.ts';
import { recordedError, RunRecorder } from '../run/record.ts';
import { admit, replaceAtNextFire } from './admission.ts';
import { Attempt, isFinal, type AttemptHost, type Ending, type RunEvents } from './attempt.ts';
import { Dispatcher, QueueTaker } from './dispatch.ts';
import { Execution, ShutdownError, type ExecutionParts, type Settled } from './execution.ts';
import { handBack, type HandBackReason } from './hand-back.ts';
import { workerProcessId } from './heartbeat.ts';
import { OutcomeFeed } from './outcome-feed.ts';
import { fanOut, startThen } from './workflow-steps.ts';

export type { RunOutcome } from '../interfaces.ts';

export interface ExecutorDeps {
  registry: Registry;
  /** The control plane: children (ctx.trigger, then, shards) are triggered and waited for through it. */
  control: Control;
  queues: Queues;
  /** Where final outcomes go to be turned into alerts. */
  alerts?: Alerts;
  minter: TokenMinter;
  clients: ServiceClients;
  /**
   * Connection the QueueTakers (BullMQ workers) are built from (maxRetriesPerRequest: null); runs are recorded on it, and
   * the minter's token store uses it (a run's completion follows the revocation of its tokens on it).
   */
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

/**
 * How often the busy queues are checked for stalled runs: half the lock, so a crashed worker's run goes back to the queue
 * at most lock + half a lock after the crash (15 s with the default 10 s lock).
 */
function stalledInterval(lockDurationMs: number): number {
  return Math.max(500, Math.floor(lockDurationMs / 2));
}

/** With Redis lost, how long after the shutdown deadline the takers get to wind down before the shutdown goes on. */
const LOST_CLOSE_GRACE_MS = 1000;

/** How long a replace run waits before it looks again whether the runs it replaced have stopped. */
const REPLACE_RECHECK_MS = 250;

export class RunExecutor extends EventEmitter<RunEvents> implements AttemptHost {
  /** The QueueTaker of each job served here. */
  readonly takers = new Map<string, QueueTaker>();
  private readonly deps: ExecutorDeps;
  private readonly shutdown = new AbortController();
  /** This process's executions by run id: a lost lock aborts the one it belongs to. */
  private readonly executions = new Map<string, Execution>();
  /** Attempts being admitted here, by run id, with the reason of a cancel heard meanwhile (its execution starts cancelled). */
  private readonly admitting = new Map<string, string | undefined>();
  /** Every execution in progress here (a run id can have an older one still settling): shutdown aborts them all. */
  private readonly live = new Set<Execution>();
  /** The definition each taker runs (a reload replaces a taker whose definition changed). */
  private readonly definitions = new Map<string, RegisteredJob>();
  /** Takers replaced by a reload, finishing their runs. */
  private readonly retiring = new Set<QueueTaker>();
  private readonly dispatcher: Dispatcher;
  /** This process in the executor registry (the heartbeat) and in the name of its dispatcher's connection. */
  readonly processId = workerProcessId();
  private served: string[] = [];
  private readonly outcomes: OutcomeFeed | undefined;
  private readonly recorder: RunRecorder;
  private readonly executionParts: ExecutionParts;
  /**
   * The process's Redis log (the control plane's, which every connection of the process reports into): BullMQ workers'
   * errors are logged once per reason, an outage once when lost, every 30 s while it lasts and once when back.
   */
  private readonly redisErrors: RedisErrorLog;
  /** Runs that a shutdown could not hand back (Redis unreachable): the stalled-run check recovers them once it is back. */
  private readonly unreturned = new Set<string>();
  /** Runs that ended here while Redis was lost, and when: their outcome waits in the connection's queue until it is back. */
  private readonly endedWhileLost = new Map<string, number>();

  constructor(deps: ExecutorDeps) {
    super();
    // A run's completion must reach Redis after the revocation of its tokens (Execution.close): one connection keeps them
    // in that order.
    if (deps.minter.store.redis !== deps.connection) throw new Error('the token store must use the run executor’s connection');
    this.deps = deps;
    this.outcomes = deps.alerts && new OutcomeFeed(deps.alerts);
    this.recorder = new RunRecorder(deps.connection, deps.queues.keys);
    const { minter, clients, control, tokenMaxLifetimeMs, runawayGraceMs } = deps;
    this.executionParts = { minter, clients, control, keys: deps.queues.keys, tokenMaxLifetimeMs, runawayGraceMs, events: this };
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
        if (this.cancel(runIdOf(job, id), reason ?? 'cancelled')) logger.info({ job, run: runIdOf(job, id) }, 'run cancel requested');
      } catch {
        logger.warn('ignored a malformed cancel message');
      }
    });
    await subscriber.subscribe(queues.cancelChannel);
  }

  /**
   * Serves exactly these jobs with the registry's current definitions: starts takers for new ones, and for changed or
   * removed ones retires the old taker (it takes no new run; runs in progress finish on the old code).
   */
  async serve(names: string[]): Promise<void> {
    const { registry, logger } = this.deps;
    for (const [name, taker] of this.takers) {
      if (names.includes(name) && registry.has(name) && this.definitions.get(name) === registry.get(name)) continue;
      this.takers.delete(name);
      this.definitions.delete(name);
      this.retiring.add(taker);
      void this.dispatcher
        .retire(taker)
        .then(() => taker.close())
        .catch((err: Error) => logger.error({ job: name, err: err.message }, 'could not close a retired worker'))
        .finally(() => this.retiring.delete(taker));
      logger.info(
        { job: name },
        names.includes(name) && registry.has(name) ? 'job changed: new runs use the new code' : 'job removed here',
      );
    }
    const started = await Promise.all(names.filter((name) => !this.takers.has(name)).map((name) => this.startTaker(registry.get(name))));
    // Given to the dispatcher together, so its wait starts over every new job at once (not once per job).
    for (const job of started) this.dispatcher.serve(job.name, this.takers.get(job.name)!, job.concurrencyPerWorker, job.concurrency);
    this.served = names;
    await Promise.all([...this.takers.values()].map((w) => w.waitUntilReady()));
  }

  /** The jobs this process serves now. */
  get jobs(): string[] {
    return this.served;
  }

  /** The job's QueueTaker with its listeners, and its limits written to Redis; serve() hands it to the dispatcher. */
  private async startTaker(job: RegisteredJob): Promise<RegisteredJob> {
    const { connection, prefix, logger, queues, lockDurationMs, maxStalls } = this.deps;
    const { name } = job;
    const queue = queues.queue(name);
    // Limits kept in Redis hold for every worker process of the job, however many there are.
    await queue.setGlobalConcurrency(job.concurrency);
    await (job.rateLimit ? queue.setGlobalRateLimit(job.rateLimit.max, job.rateLimit.durationMs) : queue.removeGlobalRateLimit());
    // Two parameters: BullMQ makes an AbortController per run only for a processor that takes a third (its signal); a
    // cancel reaches the run's execution here (cancel()).
    const taker = new QueueTaker(name, (bullJob: Job, lock?: string) => this.attempt(job, bullJob, lock), {
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
    taker.on('error', (err) => this.takerError(name, err));
    taker.on('stalled', (id) => {
      logger.warn(
        { job: name, run: runIdOf(name, id) },
        'recovered a stalled run: its worker stopped (crashed or froze past its lock); it runs again',
      );
      this.emit('run:recovered', { job: name, runId: runIdOf(name, id) });
    });
    taker.on('failed', (bullJob, err) => {
      if (bullJob && err.message === STALL_LIMIT_REASON) void this.stalledOut(job, bullJob);
    });
    taker.on('lockRenewalFailed', (ids) => {
      for (const id of ids) this.executions.get(runIdOf(name, id))?.abort(new LockLostError(runIdOf(name, id)));
    });
    this.takers.set(name, taker);
    this.definitions.set(name, job);
    return job;
  }

  /** A taker's (BullMQ worker's) error: a completion refused for a lost lock is the run's news, not the worker's. */
  private takerError(job: string, err: Error): void {
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
    const attempts = Math.max(1, bullJob.attemptsMade);
    const record = this.recorder.of(bullJob, attempts);
    await record.log(error).catch(() => undefined);
    this.emit('run:end', { job: job.name, runId, attempt: attempts, outcome: 'failed', durationMs: 0 });
    record.attemptEnded('failed', Date.now(), Date.now());
    void record.failed('failed');
    this.finished({ job, runId, outcome: 'failed', error, attempts, durationMs: 0 });
  }

  /** A run's final outcome, on its way to the alerts. */
  finished(run: FinishedRun): void {
    this.outcomes?.push(run);
  }

  /**
   * One attempt of one run (the QueueTaker's processor): admit -> execute -> record. What it returns completes the run;
   * what it throws is BullMQ's to record (see record()).
   */
  async attempt(job: RegisteredJob, bullJob: Job, lock: string | undefined): Promise<unknown> {
    const attempt = new Attempt(job, bullJob, this.deps.logger, this.recorder, this);
    const runId = attempt.run.id;
    this.admitting.set(runId, undefined);
    let ending: Ending;
    try {
      const admitted = admit(attempt, this.deps.queues);
      const admission = admitted instanceof Promise ? await admitted : admitted;
      ending =
        admission.verdict === 'refuse'
          ? await attempt.refuse(admission.reason)
          : admission.verdict === 'wait'
            ? await this.handBack(attempt, lock, 'replace', Date.now() + REPLACE_RECHECK_MS)
            : await this.execute(attempt, lock);
    } finally {
      this.admitting.delete(runId);
    }
    return this.record(attempt, ending);
  }

  /**
   * A cancel broadcast for `runId`: aborts its execution here, or, while its attempt is being admitted here, the
   * execution it starts. False when the run is not active in this process.
   */
  cancel(runId: string, reason: string): boolean {
    const execution = this.executions.get(runId);
    if (execution) {
      execution.cancel(reason);
      return true;
    }
    if (!this.admitting.has(runId)) return false;
    this.admitting.set(runId, reason);
    return true;
  }

  /** Executes an admitted attempt: a sharded run fans out; any other runs its handler in an Execution of its own. */
  private async execute(attempt: Attempt, lock: string | undefined): Promise<Ending> {
    if (attempt.fansOut) return fanOut(attempt, lock, this.deps);
    const { job, meta, run } = attempt;
    const execution = new Execution(attempt, lock, this.executionParts);
    this.executions.set(run.id, execution);
    this.live.add(execution);
    // A cancel heard while admission ran.
    const cancelled = this.admitting.get(run.id);
    this.admitting.delete(run.id);
    if (cancelled !== undefined) execution.cancel(cancelled);
    // A scheduled fire of a replace job replaces this run when it is due (admission.ts).
    const stopWatching = job.overlap === 'replace' && job.schedule && !meta.shard ? replaceAtNextFire(job, this.deps.queues) : undefined;
    try {
      return await this.conclude(attempt, execution, lock, await execution.run(this.shutdown.signal.aborted));
    } finally {
      stopWatching?.();
      this.live.delete(execution);
      if (this.executions.get(run.id) === execution) this.executions.delete(run.id);
      await execution.close();
    }
  }

  /**
   * What the execution's end means, said while it still holds its tokens (they are revoked right after): a success starts
   * the `then` steps; a shutdown or a lost lock hands the run back; any other end is a failure with its outcome.
   */
  private async conclude(attempt: Attempt, execution: Execution, lock: string | undefined, settled: Settled): Promise<Ending> {
    const { log, run, job } = attempt;
    if (settled.returned) {
      log.info({ ms: Date.now() - attempt.taken }, 'run completed');
      try {
        if (job.then.length) await startThen(attempt, settled.result, this.deps.control);
      } catch (err) {
        return this.conclude(attempt, execution, lock, { returned: false, reason: err, thrown: err });
      }
      attempt.end('completed', true);
      return { kind: 'completed', result: settled.result };
    }
    const { reason, thrown } = settled;
    if (reason instanceof ShutdownError) return this.handBack(attempt, lock, 'shutdown', undefined, execution.revocation());
    if (reason instanceof LockLostError) return this.handBack(attempt, undefined, 'lock-lost');
    await execution.settle();
    const final = isFinal(reason, thrown);
    const error = recordedError(reason, final, execution.raws);
    const outcome = outcomeOfError(reason);
    log.warn({ ms: Date.now() - attempt.taken, outcome, error: error.message }, 'run failed');
    attempt.end(outcome, final || run.attempt >= job.attempts, error.message);
    return { kind: 'failed', outcome, error };
  }

  /**
   * Records how the attempt ended and tells BullMQ: a result completes the run; a failure's outcome is written (run/record.ts)
   * before BullMQ records its token-free error; DelayedError says the run is handled elsewhere (handed back), and
   * WaitingChildrenError that it waits for its shards.
   */
  private record(attempt: Attempt, ending: Ending): unknown {
    switch (ending.kind) {
      case 'completed':
        return ending.result;
      case 'failed':
        return attempt.record.failed(ending.outcome).then(() => {
          throw ending.error;
        });
      case 'handed-back':
        throw new DelayedError();
      case 'waiting-for-shards':
        throw new WaitingChildrenError();
    }
  }

  private handBack(
    attempt: Attempt,
    lock: string | undefined,
    reason: HandBackReason,
    untilMs?: number,
    revoked?: Promise<void>,
  ): Promise<Ending> {
    const parts = { redisLost: () => this.redisErrors.lost, unreturned: this.unreturned, events: this };
    return handBack(attempt, lock, reason, parts, untilMs, revoked);
  }

  /** Runs active in this process (for the heartbeat). */
  activeRuns(): string[] {
    return [...this.executions.keys()];
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
        .then(() => Promise.all([...this.takers.values(), ...this.retiring].map((w) => w.close())))
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
    this.reportUnreturned();
  }

  /** Names the runs the shutdown could not hand back, and those that ended here during an outage (unrecorded). */
  private reportUnreturned(): void {
    const left = [...new Set([...this.unreturned, ...this.executions.keys()])];
    // Finished here during this outage: their outcome never reached Redis, so they run again like the others.
    const lostAt = this.redisErrors.state().lostAt ?? Infinity;
    const unrecorded = [...this.endedWhileLost].filter(([id, at]) => at >= lostAt && !left.includes(id)).map(([id]) => id);
    if (!left.length && !unrecorded.length) return;
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
