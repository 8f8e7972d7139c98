// Failure alerts: one JSON POST when a run ends badly for good (never once per attempt), and one when a job that last
// ended badly succeeds again. Delivery is a BullMQ queue of its own (`__alerts`), so it is kept in Redis, retried with
// backoff, survives restarts, and never blocks or fails the run. The payload carries a `text` field so Slack and
// compatible chat webhooks show it as it is. Its failures are logged and counted (jobscope_alerts_total).
import { EventEmitter } from 'node:events';
import { Queue, Worker, type Job } from 'bullmq';
import got from 'got';
import type { Redis } from 'ioredis';
import type { AlertEvent, RegisteredJob, RunOutcome } from '../interfaces.ts';
import type { RedisKeys } from '../run/redis-keys.ts';
import { scripts } from '../run/scripts.ts';
import type { Logger } from '../log.ts';
import { closeWorker, type RedisErrorLog } from '../redis/connect.ts';

/** Not a job name (those start with a letter or digit), so it can never clash with one. */
export const ALERT_QUEUE = '__alerts';
const DELIVERY_ATTEMPTS = 8;

export interface AlertSettings {
  /** JOBSCOPE_ALERT_WEBHOOK: where jobs without their own `alert.webhook` send alerts. */
  defaultWebhook?: string;
  /** Base URL of the dashboard, for the link in each alert. */
  publicUrl: string;
}

export interface FinishedRun {
  job: RegisteredJob;
  runId: string;
  outcome: RunOutcome;
  error: string | null;
  attempts: number;
  durationMs: number;
}

export interface AlertPayload {
  event: AlertEvent;
  job: string;
  runId: string;
  outcome: RunOutcome;
  error: string | null;
  attempts: number;
  durationMs: number;
  url: string;
  at: string;
  /** One line for chat webhooks (Slack, Mattermost, Teams' incoming webhooks show `text`). */
  text: string;
}

export interface AlertEvents {
  delivered: [{ job: string; event: AlertEvent }];
  /** A delivery attempt failed; `final` when no attempt is left. */
  failed: [{ job: string; event: AlertEvent; error: string; final: boolean }];
}

const BAD: Partial<Record<RunOutcome, AlertEvent>> = { failed: 'failed', timeout: 'timeout', misfire: 'misfire' };

export function alertText(p: Omit<AlertPayload, 'text'>): string {
  const took = `${(p.durationMs / 1000).toFixed(1)} s`;
  if (p.event === 'recovered') return `jobscope: ${p.job} recovered: run ${p.runId} completed (${took}) ${p.url}`;
  const tries = p.attempts === 1 ? '1 attempt' : `${p.attempts} attempts`;
  return `jobscope: ${p.job} ${p.outcome}: run ${p.runId} after ${tries} (${took})${p.error ? `: ${p.error}` : ''} ${p.url}`;
}

export class Alerts extends EventEmitter<AlertEvents> {
  private readonly redis: Redis;
  private readonly keys: RedisKeys;
  private readonly settings: AlertSettings;
  private readonly logger: Logger;
  private readonly queue: Queue;
  private worker: Worker | undefined;
  /** The process's Redis log (outages once, not once per retry of this queue and worker). */
  private readonly redisLog: RedisErrorLog | undefined;

  constructor(redis: Redis, keys: RedisKeys, prefix: string, settings: AlertSettings, logger: Logger, redisLog?: RedisErrorLog) {
    super();
    this.redis = redis;
    this.keys = keys;
    this.settings = settings;
    this.logger = logger;
    this.redisLog = redisLog;
    this.queue = new Queue(ALERT_QUEUE, { connection: redis, prefix });
    // A Queue without an 'error' listener prints each error raw (multi-line) on stderr.
    this.queue.on('error', (err) => this.redisError(err, 'alert queue error'));
  }

  private redisError(err: Error, msg: string): void {
    if (this.redisLog) this.redisLog.note(err, { queue: ALERT_QUEUE }, msg);
    else this.logger.error({ err: err.message }, msg);
  }

  /** Called once per run that has finished for good: records its outcome and queues the alerts it calls for. */
  async finished(run: FinishedRun): Promise<void> {
    try {
      const previous = await scripts(this.redis).swapField(this.keys.lastOutcome, run.job.name, run.outcome);
      const event: AlertEvent | undefined =
        run.outcome === 'completed'
          ? previous && previous !== 'completed' && previous in BAD
            ? 'recovered'
            : undefined
          : BAD[run.outcome];
      const webhook = run.job.alert?.webhook ?? this.settings.defaultWebhook;
      const on = run.job.alert?.on ?? ['failed', 'timeout', 'misfire', 'recovered'];
      if (!event || !webhook || !on.includes(event)) return;
      const base: Omit<AlertPayload, 'text'> = {
        event,
        job: run.job.name,
        runId: run.runId,
        outcome: run.outcome,
        error: run.error,
        attempts: run.attempts,
        durationMs: run.durationMs,
        url: `${this.settings.publicUrl.replace(/\/$/, '')}/dashboard/run.html?id=${encodeURIComponent(run.runId)}`,
        at: new Date().toISOString(),
      };
      await this.queue.add(
        event,
        { webhook, payload: { ...base, text: alertText(base) } },
        { attempts: DELIVERY_ATTEMPTS, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: 1000, removeOnFail: 5000 },
      );
    } catch (err) {
      // An alert must never fail the run it reports.
      this.logger.error({ job: run.job.name, run: run.runId, err: (err as Error).message }, 'could not queue an alert');
    }
  }

  /** Delivers queued alerts (every worker host runs one delivery worker; any of them may send a given alert). */
  startDelivery(connection: Redis, prefix: string): void {
    this.worker = new Worker(
      ALERT_QUEUE,
      async (job: Job<{ webhook: string; payload: AlertPayload }>) => {
        await got.post(job.data.webhook, { json: job.data.payload, timeout: { request: 10_000 }, retry: { limit: 0 } });
      },
      { connection, prefix, concurrency: 5 },
    );
    this.worker.on('error', (err) => this.redisError(err, 'alert delivery worker error'));
    this.worker.on('completed', (job) => {
      this.logger.info({ job: job.data.payload.job, event: job.data.payload.event }, 'alert delivered');
      this.emit('delivered', { job: job.data.payload.job, event: job.data.payload.event });
    });
    this.worker.on('failed', (job, err) => {
      if (!job) return;
      const final = job.attemptsMade >= DELIVERY_ATTEMPTS;
      const entry = { job: job.data.payload.job, event: job.data.payload.event, error: err.message, final };
      if (final) this.logger.error(entry, 'alert not delivered: no attempt left');
      else this.logger.warn(entry, 'alert delivery failed; retrying with backoff');
      this.emit('failed', entry);
    });
  }

  /** With `force` (Redis lost), the delivery worker stops without waiting for Redis; queued alerts stay queued. */
  async close(opts: { force?: boolean } = {}): Promise<void> {
    if (this.worker) await closeWorker(this.worker, opts.force);
    await this.queue.close();
  }
}
