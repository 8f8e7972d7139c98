// The run's record: the one place that writes down what a run did, in the run's own BullMQ hash (RUN_FIELDS) and log list.
// The read side (run reports, the Run page) reads these facts as written; nothing is inferred from an error's name or text.
// - a failed attempt's outcome ('failed', 'timeout', 'cancelled', ...) in RUN_FIELDS.outcome, said by the runtime that
//   ended it: an error a handler throws cannot pass for a timeout or a cancel by its name;
// - one row per attempt that did not complete (RUN_FIELDS.attempts), a time and attempt per log line (RUN_FIELDS.logMeta),
//   a misfire (RUN_FIELDS.trigger).
// Every field is written only while the run's hash exists (appendRunLine), so nothing outlives a removed run. A completed
// attempt writes nothing here (the run's own times are its times); a log line costs one command beside BullMQ's, a failed
// attempt two (its row and its outcome).
import { UnrecoverableError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { appendRunLine } from './lines.ts';
import type { RecordedAttempt } from './model.ts';
import type { RunOutcome } from '../interfaces.ts';
import { redactTokens } from '../redact.ts';
import { RUN_FIELDS, type RedisKeys } from './redis-keys.ts';

/** Where a process records its runs: the connection its BullMQ workers share, and the key layout. */
export class RunRecorder {
  private readonly redis: Redis;
  private readonly keys: RedisKeys;

  constructor(redis: Redis, keys: RedisKeys) {
    this.redis = redis;
    this.keys = keys;
  }

  /** The record of one attempt of a run: `attempt` is the attempt's number (1 for the first). */
  of(bullJob: Job, attempt: number): RunRecord {
    return new RunRecord(this.redis, this.keys.bullJob(bullJob.queueName, String(bullJob.id)), bullJob, attempt);
  }
}

/** What one attempt of a run writes down. */
export class RunRecord {
  private readonly redis: Redis;
  private readonly key: string;
  private readonly bullJob: Job;
  private readonly attempt: number;

  constructor(redis: Redis, key: string, bullJob: Job, attempt: number) {
    this.redis = redis;
    this.key = key;
    this.bullJob = bullJob;
    this.attempt = attempt;
  }

  /**
   * Writes to a field of the run's hash while the run exists: appends `line`, keeping the last `keep` lines (0: all; 1: the
   * field is set to `line`). Never rejects: a record that cannot be written (the run is gone, Redis refused) resolves 0.
   */
  private write(field: string, line: string, keep: number): Promise<number> {
    return appendRunLine(this.redis, this.key, field, line, keep);
  }

  /**
   * Appends a line to the run's log (BullMQ's list, trimmed to the run's keepLogs), and its time and attempt beside it in
   * RUN_FIELDS.logMeta, in step with the list. The line must already be token-free.
   */
  async log(line: string): Promise<number> {
    const at = Date.now();
    const count = await this.bullJob.log(line);
    if (count >= 0) void this.write(RUN_FIELDS.logMeta, `${at},${this.attempt}`, this.bullJob.opts.keepLogs ?? 0);
    return count;
  }

  /** A scheduled fire that starts late and runs once: its trigger reads 'misfire', and its log says how late. */
  async misfire(line: string): Promise<void> {
    await this.write(RUN_FIELDS.trigger, 'misfire', 1);
    await this.log(line);
  }

  /** The row of an attempt that did not complete ('handed back' for one that went back to the queue). */
  attemptEnded(outcome: RunOutcome | 'handed back', start: number, end: number): void {
    if (outcome === 'completed') return;
    void this.write(RUN_FIELDS.attempts, JSON.stringify({ a: this.attempt, start, end, outcome } satisfies RecordedAttempt), 0);
  }

  /**
   * How the attempt that is failing ended, written before BullMQ records the failure (the processor throws after this
   * resolves), so a run that reads 'failed' already has its outcome. The last failed attempt's outcome stays.
   */
  async failed(outcome: RunOutcome): Promise<void> {
    await this.write(RUN_FIELDS.outcome, outcome, 1);
  }
}

/**
 * The error BullMQ records for a failed attempt (its failedReason and stack): the reason's name, message and frames with
 * every token value in `tokens` redacted, and an UnrecoverableError when retrying cannot help (`final`). The outcome is
 * not in it: RunRecord.failed writes that.
 */
export function recordedError(reason: unknown, final: boolean, tokens: readonly string[]): Error {
  const name = reason instanceof Error ? reason.name : 'Error';
  const message = redactTokens(reason instanceof Error ? reason.message : String(reason), tokens);
  const out = final ? new UnrecoverableError(message) : new Error(message);
  out.name = name;
  const frames = reason instanceof Error && reason.stack ? reason.stack.split('\n').filter((l) => /^\s+at /.test(l)) : [];
  out.stack = redactTokens([`${name}: ${message}`, ...frames].join('\n'), tokens);
  return out;
}
