// Prometheus metrics (prom-client, a registry per server so several can live in one process).
// Counters and the duration histogram are fed by this process's run executor (`jobscope start`); gauges are read from Redis at
// scrape time, so any server process (`jobscope server` too) reports the cluster's queue depth and live tokens.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Alerts } from '../control/alerts.ts';
import type { Control } from '../control/control.ts';
import type { RunExecutor } from '../runtime/executor.ts';

const QUEUE_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed'] as const;

export class Metrics {
  readonly registry = new Registry();
  private readonly control: Control;
  private readonly runs: Counter<'job' | 'outcome'>;
  private readonly duration: Histogram<'job' | 'outcome'>;
  private readonly minted: Counter<'job'>;
  private readonly revoked: Counter<'job'>;
  private readonly live: Gauge<'job'>;
  private readonly depth: Gauge<'job' | 'state'>;
  private readonly paused: Gauge<'job'>;
  private readonly redisUp: Gauge;
  private readonly handedBack: Counter<'job' | 'reason'>;
  private readonly runaway: Counter<'job'>;
  private readonly recovered: Counter<'job'>;
  private readonly alerts: Counter<'result'>;
  private readonly observed = new WeakSet<RunExecutor>();

  constructor(control: Control, opts: { defaultMetrics?: boolean } = {}) {
    this.control = control;
    const registers = [this.registry];
    this.runs = new Counter({
      name: 'jobscope_runs_total',
      help: 'Finished run attempts by job and outcome (completed, failed, timeout, cancelled, skipped, misfire), counted by this process',
      labelNames: ['job', 'outcome'],
      registers,
    });
    this.duration = new Histogram({
      name: 'jobscope_run_duration_seconds',
      help: 'Duration of run attempts by job and outcome, measured by this process',
      labelNames: ['job', 'outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900],
      registers,
    });
    this.minted = new Counter({
      name: 'jobscope_tokens_minted_total',
      help: 'Run tokens minted by this process',
      labelNames: ['job'],
      registers,
    });
    this.revoked = new Counter({
      name: 'jobscope_tokens_revoked_total',
      help: 'Run tokens revoked by this process',
      labelNames: ['job'],
      registers,
    });
    this.live = new Gauge({
      name: 'jobscope_tokens_live',
      help: 'Tokens live in Redis right now (cluster-wide)',
      labelNames: ['job'],
      registers,
    });
    this.depth = new Gauge({
      name: 'jobscope_queue_jobs',
      help: 'Runs in each queue by state (cluster-wide)',
      labelNames: ['job', 'state'],
      registers,
    });
    this.handedBack = new Counter({
      name: 'jobscope_runs_handed_back_total',
      help: 'Run executions this process gave up without consuming an attempt: shutdown (back to the queue), lock-lost (another worker has the run) or completion-refused (finished after its lock was lost: it runs again)',
      labelNames: ['job', 'reason'],
      registers,
    });
    this.runaway = new Counter({
      name: 'jobscope_runs_runaway_total',
      help: 'Aborted runs (timeout, cancel) whose handler ignored ctx.signal past the runaway grace; they run on without a token',
      labelNames: ['job'],
      registers,
    });
    this.recovered = new Counter({
      name: 'jobscope_runs_recovered_total',
      help: "Runs this process's stalled-run check put back in the queue because their worker stopped (crashed, froze past its lock)",
      labelNames: ['job'],
      registers,
    });
    this.alerts = new Counter({
      name: 'jobscope_alerts_total',
      help: 'Alert deliveries by this process: delivered, retrying (an attempt failed), failed (no attempt left)',
      labelNames: ['result'],
      registers,
    });
    for (const result of ['delivered', 'retrying', 'failed']) this.alerts.inc({ result }, 0);
    this.paused = new Gauge({ name: 'jobscope_job_paused', help: '1 when the job is paused', labelNames: ['job'], registers });
    this.redisUp = new Gauge({ name: 'jobscope_redis_up', help: '1 when Redis answered the last scrape', registers });
    for (const name of control.registry.names) {
      this.live.set({ job: name }, 0);
      this.minted.inc({ job: name }, 0);
      this.revoked.inc({ job: name }, 0);
      this.runaway.inc({ job: name }, 0);
      this.recovered.inc({ job: name }, 0);
    }
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'jobscope_' });
  }

  /** Counts the runs and tokens of this run executor (once per executor). */
  observe(executor: RunExecutor): void {
    if (this.observed.has(executor)) return;
    this.observed.add(executor);
    executor.on('run:end', ({ job, outcome, durationMs }) => {
      this.runs.inc({ job, outcome });
      this.duration.observe({ job, outcome }, durationMs / 1000);
    });
    executor.on('run:handback', ({ job, reason }) => this.handedBack.inc({ job, reason }));
    executor.on('run:runaway', ({ job }) => this.runaway.inc({ job }));
    executor.on('run:recovered', ({ job }) => this.recovered.inc({ job }));
    executor.on('token:minted', ({ job }) => this.minted.inc({ job }));
    executor.on('token:revoked', ({ job }) => this.revoked.inc({ job }));
  }

  /** Counts this process's alert deliveries. */
  observeAlerts(alerts: Alerts): void {
    alerts.on('delivered', () => this.alerts.inc({ result: 'delivered' }));
    alerts.on('failed', ({ final }) => this.alerts.inc({ result: final ? 'failed' : 'retrying' }));
  }

  /** Reads the gauges from Redis (bounded: a scrape during a Redis outage still answers, with jobscope_redis_up 0). */
  async refresh(timeoutMs = 2000): Promise<void> {
    const { control } = this;
    if (control.redis.status !== 'ready') {
      this.redisUp.set(0);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const read = async () => {
      const [tokens, perJob] = await Promise.all([
        control.liveTokens(),
        Promise.all(
          control.registry.names.map(async (name) => ({
            name,
            counts: await control.queues.queue(name).getJobCounts(...QUEUE_STATES),
            paused: await control.queues.isPaused(name),
          })),
        ),
      ]);
      return { tokens, perJob };
    };
    try {
      const { tokens, perJob } = await Promise.race([
        read(),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), timeoutMs))),
      ]);
      this.live.reset();
      for (const name of control.registry.names) this.live.set({ job: name }, 0);
      for (const t of tokens) this.live.inc({ job: t.job });
      for (const { name, counts, paused } of perJob) {
        for (const state of QUEUE_STATES) this.depth.set({ job: name, state }, counts[state] ?? 0);
        this.paused.set({ job: name }, paused ? 1 : 0);
      }
      this.redisUp.set(1);
    } catch {
      this.redisUp.set(0);
    } finally {
      clearTimeout(timer);
    }
  }

  async text(): Promise<string> {
    await this.refresh();
    return this.registry.metrics();
  }
}
