// createClient: trigger and follow runs from application code, with the API's options and the same checks (params,
// overlap, idempotency key). It is the control plane (control/control.ts) and nothing more: no workers, no keys.
// The jobs it knows are the definitions it is given (typed: data is checked against each job's params type), a jobs
// folder, or, by default, what the runners serving this Redis and prefix published.
import type { CancelResult, EnqueueResult } from './control/queues.ts';
import { Control, type RunView } from './control/control.ts';
import type { JobDefinition, TriggerOptions, RegisteredJob, RunReport } from './interfaces.ts';
import { registerDefinition } from './jobs/define.ts';
import { publishedRegistry } from './jobs/published.ts';
import { loadRegistry, Registry } from './jobs/registry.ts';
import { RedisKeys } from './run/redis-keys.ts';
import { connect } from './redis/connect.ts';
import type { Logger } from './log.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any definition, whatever its data and result types
type AnyDefinition = JobDefinition<any, any>;
export type JobMap = Record<string, AnyDefinition>;
/** The data a job's handler receives (its `params` type), from its definition. */
export type DataOf<D> = D extends JobDefinition<infer Data, infer _R> ? Data : Record<string, unknown>;
/** What a job's handler returns, from its definition. */
export type ResultOf<D> = D extends JobDefinition<infer _D, infer Result> ? Awaited<Result> : unknown;

export interface ClientOptions<J extends JobMap = JobMap> {
  /** Default `redis://127.0.0.1:6379`. */
  redisUrl?: string;
  /** The runners' JOBSCOPE_PREFIX; default `jobscope`. */
  prefix?: string;
  /** Definitions by job name (imported job files), or a jobs folder. Default: what the runners published in Redis. */
  jobs?: J | string;
  /** Who triggers, as runs record it (`triggeredBy: 'client:<as>'`) and their tokens carry it (`act`); default 'client'. */
  as?: string;
  /** Where Redis connection errors go (a pino-like logger); default: nowhere (calls fail with the error instead). */
  logger?: Pick<Logger, 'warn' | 'error'>;
}

/** The trigger options (delay, at, priority, key); who triggers is the client's `as`, never an option of a call. */
export interface ClientTriggerOptions extends TriggerOptions {
  /** Wait for the run to finish and resolve with its report; a number is the longest wait in ms. */
  wait?: boolean | number;
}

/** A finished run, with the result typed by the job's definition. */
export interface FinishedRun<R = unknown> extends RunReport {
  result: R | null;
}

export interface JobscopeClient<J extends JobMap = JobMap> {
  /** Enqueues a run: `{ runId }` (or the kept run of the same `key`, `existing: true`). */
  trigger<K extends keyof J & string>(job: K, data?: DataOf<J[K]>, opts?: ClientTriggerOptions & { wait?: false }): Promise<EnqueueResult>;
  /** Enqueues a run and resolves once it has finished, whatever its outcome (see `outcome`). */
  trigger<K extends keyof J & string>(
    job: K,
    data: DataOf<J[K]> | undefined,
    opts: ClientTriggerOptions & { wait: true | number },
  ): Promise<FinishedRun<ResultOf<J[K]>>>;
  /** A run as the API reports it (state, outcome, result, error, logs, token claims). */
  run(runId: string): Promise<RunView>;
  /** Cancels a waiting or active run on whichever host runs it; its tokens are revoked at once. */
  cancel(runId: string, reason?: string): Promise<CancelResult>;
  close(): Promise<void>;
}

async function registryFor(opts: ClientOptions, redisUrl: string, prefix: string): Promise<Registry> {
  if (typeof opts.jobs === 'string') return loadRegistry(opts.jobs);
  if (opts.jobs) {
    return new Registry(
      Object.entries(opts.jobs).map(([name, def]): RegisteredJob => registerDefinition(name, `(createClient jobs.${name})`, def)),
    );
  }
  const redis = connect(redisUrl);
  try {
    return await publishedRegistry(redis, new RedisKeys(prefix));
  } finally {
    redis.disconnect();
  }
}

export function createClient<J extends JobMap = JobMap>(opts: ClientOptions<J> = {}): JobscopeClient<J> {
  const redisUrl = opts.redisUrl ?? 'redis://127.0.0.1:6379';
  const prefix = opts.prefix ?? 'jobscope';
  let opened: Promise<Control> | undefined;
  // Opened on first use, so building a client never throws or blocks; a job published after that is found on a retry.
  const control = async (job?: string): Promise<Control> => {
    opened ??= registryFor(opts, redisUrl, prefix).then(async (registry) => {
      const c = new Control({ redisUrl, prefix, registry, logger: opts.logger });
      await c.ready();
      return c;
    });
    const c = await opened;
    if (job !== undefined && !c.registry.has(job) && opts.jobs === undefined) {
      opened = undefined;
      await c.close();
      return control();
    }
    return c;
  };
  const client = {
    async trigger(job: string, data?: unknown, options: ClientTriggerOptions = {}) {
      // Only the public options are read: a `by` or `parent` slipped in from untyped code never reaches the run.
      const { wait, delay, at, priority, key } = options;
      const triggerOptions: TriggerOptions = { delay, at, priority, key };
      const c = await control(job);
      const added = await c.trigger(job, data ?? {}, { ...triggerOptions, trigger: 'api', by: opts.as ? `client:${opts.as}` : 'client' });
      if (!wait) return added;
      return c.waitForRun(added.runId, typeof wait === 'number' ? wait : undefined);
    },
    async run(runId: string) {
      return (await control()).run(runId);
    },
    async cancel(runId: string, reason = 'cancelled by the client') {
      return (await control()).cancel(runId, reason);
    },
    async close() {
      if (opened) await (await opened.catch(() => undefined))?.close();
      opened = undefined;
    },
  };
  return client as JobscopeClient<J>;
}
