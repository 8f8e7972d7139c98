// One attempt of one run, as the run executor (executor.ts) carries it through its three steps, admit -> execute -> record:
// who and what the run is (RunInfo), its logger, its record (run/record.ts), its clock, and how it ended (Ending).
import { UnrecoverableError, type Job } from 'bullmq';
import { RunCancelledError, RunMisfireError, RunSkippedError } from '../errors.ts';
import type { RegisteredJob, RunInfo, RunOutcome, Trigger } from '../interfaces.ts';
import type { Logger } from '../log.ts';
import type { FinishedRun } from '../control/alerts.ts';
import { metaOf, runIdOf } from '../run/model.ts';
import { outcomeOfError } from '../run/outcome.ts';
import { recordedError, type RunRecord, type RunRecorder } from '../run/record.ts';
import type { RunMeta } from '../run/redis-keys.ts';
import type { AttemptSpan } from '../trace.ts';

/**
 * How an attempt ended, as the record step tells BullMQ: a result completes the run; a failure is recorded with its
 * outcome and fails the attempt (the run, when `error` is an UnrecoverableError or it was the last attempt); a hand-back
 * leaves the run to BullMQ as it was moved (back to the queue, or to another worker that holds its lock now); a sharded
 * run waits for its shards.
 */
export type Ending =
  | { kind: 'completed'; result: unknown }
  | { kind: 'failed'; outcome: RunOutcome; error: Error }
  | { kind: 'handed-back' }
  | { kind: 'waiting-for-shards' };

/** Does the attempt's end end the run for good (retrying cannot help)? `thrown` is what the handler threw, if it did. */
export function isFinal(reason: unknown, thrown: unknown): boolean {
  return (
    reason instanceof RunCancelledError ||
    reason instanceof RunSkippedError ||
    reason instanceof RunMisfireError ||
    thrown instanceof UnrecoverableError
  );
}

export type RunLog = Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;

type Level = 'info' | 'warn' | 'error' | 'debug';

/**
 * The run's logger: a child with the run's bindings, built on the first line that is actually logged (most are not), so
 * an attempt whose lines are all below the level allocates nothing for logging.
 */
class RunLogger implements RunLog {
  private readonly logger: Logger;
  private readonly attempt: Attempt;
  private child: Logger | undefined;
  constructor(logger: Logger, attempt: Attempt) {
    this.logger = logger;
    this.attempt = attempt;
  }
  private at(level: Level, args: unknown[]): void {
    if (!this.logger.isLevelEnabled(level)) return;
    const { job, run } = this.attempt;
    this.child ??= this.logger.child({ job: job.name, run: run.id, attempt: run.attempt });
    (this.child[level] as (...a: unknown[]) => void)(...args);
  }
  info(...args: unknown[]): void {
    this.at('info', args);
  }
  warn(...args: unknown[]): void {
    this.at('warn', args);
  }
  error(...args: unknown[]): void {
    this.at('error', args);
  }
  debug(...args: unknown[]): void {
    this.at('debug', args);
  }
}

/** The events of a process's runs (RunExecutor emits them; metrics, tests and embedders listen). */
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

/** What an attempt reports to: the executor's events and, for a run's final outcome, the alerts. */
export interface AttemptHost {
  emit<E extends keyof RunEvents>(event: E, ...args: RunEvents[E]): boolean;
  finished(run: FinishedRun): void;
}

export class Attempt {
  readonly job: RegisteredJob;
  readonly bullJob: Job;
  readonly run: RunInfo;
  readonly meta: RunMeta;
  /** The run's data, validated (with its defaults) by admission: what the handler gets. */
  readonly data: Record<string, unknown>;
  /** How the run was created: 'schedule', 'api', 'parent', ... (BullMQ's job name). */
  readonly origin: Trigger;
  /** A run handed back (shutdown) or recovered from a stall starts again without having made an attempt. */
  readonly firstStart: boolean;
  readonly log: RunLog;
  readonly record: RunRecord;
  /** When this attempt was taken; `running`: when its handler's execution started (run:start). */
  readonly taken = Date.now();
  private running: number | undefined;
  /** The attempt's span when tracing is on (trace.ts), from the execution's start. */
  span: AttemptSpan | undefined;
  private readonly host: AttemptHost;

  constructor(job: RegisteredJob, bullJob: Job, logger: Logger, recorder: RunRecorder, host: AttemptHost) {
    const number = bullJob.attemptsMade + 1;
    const origin = (bullJob.name || 'api') as Trigger;
    const meta = metaOf(bullJob);
    this.job = job;
    this.bullJob = bullJob;
    this.origin = origin;
    this.meta = meta;
    this.data = (bullJob.data ?? {}) as Record<string, unknown>;
    this.firstStart = bullJob.attemptsMade === 0 && (bullJob.attemptsStarted ?? 1) <= 1;
    this.run = {
      id: runIdOf(job.name, bullJob.id),
      job: job.name,
      attempt: number,
      trigger: number > 1 ? 'retry' : origin,
      // After a Retry, the attempts are the retrier's doing (the run's first trigger stays in the run's report).
      triggeredBy: meta.retriedBy ?? meta.by ?? (origin === 'schedule' ? 'schedule' : 'api'),
      ...(meta.parent ? { parent: meta.parent } : {}),
    };
    this.log = new RunLogger(logger, this);
    this.record = recorder.of(bullJob, number);
    this.host = host;
  }

  /** A run of a sharded job fans out (its shards are runs of their own, which run the handler). */
  get fansOut(): boolean {
    return this.job.shards !== undefined && !this.meta.shard;
  }

  /** The handler's execution starts. */
  started(): void {
    this.running = Date.now();
    this.host.emit('run:start', { job: this.job.name, runId: this.run.id, attempt: this.run.attempt });
    this.log.info({ trigger: this.run.trigger }, 'run started');
  }

  /** The attempt ended with `outcome`; `final`: the run ends with it (no attempt follows). */
  end(outcome: RunOutcome, final = false, error: string | null = null): void {
    const now = Date.now();
    const durationMs = now - this.taken;
    const { job, run } = this;
    this.span?.end(outcome, final);
    this.host.emit('run:end', { job: job.name, runId: run.id, attempt: run.attempt, outcome, durationMs });
    if (final) this.host.finished({ job, runId: run.id, outcome, error, attempts: run.attempt, durationMs });
    this.record.attemptEnded(outcome, this.running ?? this.taken, now);
  }

  /** The attempt went back to the queue (or its lock to another worker): its row reads 'handed back'. */
  handedBack(): void {
    const now = Date.now();
    this.record.attemptEnded('handed back', this.running ?? now, now);
  }

  /** Ends the run without running it (skipped, misfire, replaced, bad data): recorded with its outcome, never retried. */
  async refuse(reason: Error): Promise<Ending> {
    const outcome = outcomeOfError(reason);
    await this.record.log(reason.message);
    this.log.info({ outcome, reason: reason.message }, 'run not started');
    this.end(outcome, true, reason.message);
    return { kind: 'failed', outcome, error: recordedError(reason, true, []) };
  }
}
