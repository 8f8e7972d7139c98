// What the Run page shows of each attempt and log line, recorded beside the workers rather than inside them: the Workers
// events give each attempt's end and outcome, BullMQ's 'active' event gives the job each attempt logs through. Everything
// goes into fields of the run's own BullMQ hash (RUN_FIELDS), written only while that hash exists, so it is removed with
// the run and never outlives it. A completed attempt writes nothing (the run's own times are its times): a run that
// succeeds at once costs no extra Redis command; a log line costs one.
import type { Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { RUN_FIELDS, type RedisKeys } from '../run/redis-keys.ts';
import { appendRunLine } from '../run/lines.ts';
import type { RecordedAttempt } from '../run/model.ts';
import type { Workers } from './worker.ts';

export class AttemptRecorder {
  private readonly redis: Redis;
  private readonly keys: RedisKeys;
  /** When each attempt in this process started (`<runId>#<attempt>`), from 'run:start' to its end. */
  private readonly starts = new Map<string, number>();
  private readonly watched = new WeakSet<Worker>();

  constructor(redis: Redis, keys: RedisKeys) {
    this.redis = redis;
    this.keys = keys;
  }

  private append(runId: string, field: string, line: string, keep = 0): Promise<number> {
    return appendRunLine(this.redis, this.keys.run(runId), field, line, keep);
  }

  /** Records the attempts of these workers' runs, and the time and attempt of every log line. */
  watch(workers: Workers): void {
    workers.on('run:start', ({ runId, attempt }) => void this.starts.set(`${runId}#${attempt}`, Date.now()));
    workers.on('run:end', ({ runId, attempt, outcome, durationMs }) => {
      const end = Date.now();
      const start = this.starts.get(`${runId}#${attempt}`) ?? end - durationMs;
      this.starts.delete(`${runId}#${attempt}`);
      if (outcome === 'completed') return;
      void this.append(runId, RUN_FIELDS.attempts, JSON.stringify({ a: attempt, start, end, outcome } satisfies RecordedAttempt));
    });
    workers.on('run:handback', ({ runId, attempt, reason }) => {
      // A refused completion follows the attempt's own end, already recorded.
      if (reason === 'completion-refused') return;
      const end = Date.now();
      const start = this.starts.get(`${runId}#${attempt}`) ?? end;
      this.starts.delete(`${runId}#${attempt}`);
      void this.append(
        runId,
        RUN_FIELDS.attempts,
        JSON.stringify({ a: attempt, start, end, outcome: 'handed back' } satisfies RecordedAttempt),
      );
    });
    this.attach(workers);
  }

  /** Follows the BullMQ workers this Workers has now (call again after a reload started new ones). */
  attach(workers: Workers): void {
    for (const worker of workers.workers.values()) {
      if (this.watched.has(worker)) continue;
      this.watched.add(worker);
      worker.on('active', (job: Job) => this.timeLogs(job));
    }
  }

  /** The job object this attempt logs through (ctx.log and the worker's own lines) records each line's time and attempt. */
  private timeLogs(job: Job): void {
    const attempt = job.attemptsMade + 1;
    const runId = `${job.queueName}:${job.id}`;
    const log = job.log.bind(job);
    job.log = async (line: string) => {
      const at = Date.now();
      const count = await log(line);
      // In step with BullMQ's log list, trimmed to the same length (keepLogs).
      if (count >= 0) void this.append(runId, RUN_FIELDS.logMeta, `${at},${attempt}`, job.opts.keepLogs ?? 0);
      return count;
    };
  }
}
