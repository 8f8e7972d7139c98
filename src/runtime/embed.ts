// createWorker: host jobscope's workers inside an existing Node service (instead of a `jobscope worker` process), from
// plain options: nothing is read from the environment. Jobs come as a folder or as imported definitions.
import { loadConfig } from '../config.ts';
import type { JobDefinition } from '../interfaces.ts';
import { registerDefinition } from '../jobs/define.ts';
import { loadRegistry, Registry } from '../jobs/registry.ts';
import { createLogger, type Logger } from '../log.ts';
import { Runtime } from './runtime.ts';
import type { RunExecutor } from './executor.ts';

export interface WorkerOptions {
  /** A jobs folder, or definitions by job name. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- definitions of any data and result types
  jobs: string | Record<string, JobDefinition<any, any>>;
  /** Default `redis://127.0.0.1:6379`. */
  redisUrl?: string;
  /** Default `jobscope`; the same for every process of one installation. */
  prefix?: string;
  /** The services `ctx.service(name)` reaches: `{ system: 'http://system:4000' }`. */
  services?: Record<string, string>;
  /** PEM P-256 key file(s) or a folder of them (JOBSCOPE_SIGNING_KEY_FILE); without, a development key in `stateDir`. */
  signingKeyFile?: string | string[];
  /** HS256 compatibility mode (JOBSCOPE_JWT_SECRET). */
  jwtSecret?: string;
  issuer?: string;
  tokenHeader?: string;
  /** Serve only these jobs. */
  only?: string[];
  /** Also own the schedules (sync them at start), as `jobscope start`/`server` do. Default: no (a worker only runs). */
  schedules?: boolean;
  /** Durations ('30s') or ms. */
  shutdownTimeout?: string | number;
  lockDuration?: string | number;
  /** How many times in a row a run's worker may die before the run fails (default 3). */
  maxStalls?: number;
  runawayGrace?: string | number;
  tokenMaxLifetime?: string | number;
  /** Where the development key lives (default `.jobscope`). */
  stateDir?: string;
  /** A pino logger, or a level for jobscope's own (JSON on stdout). */
  logger?: Logger;
  logLevel?: string;
}

export interface EmbeddedWorker {
  runtime: Runtime;
  /** The run executor of the jobs served here (its events: 'run:start', 'run:end', 'token:minted', ...). */
  workers: RunExecutor;
  /** Graceful: stops taking runs, hands back what is still active at the shutdown deadline, closes the connections. */
  close(): Promise<void>;
}

const str = (v: string | number | undefined) => (v === undefined ? undefined : String(v));

export async function createWorker(opts: WorkerOptions): Promise<EmbeddedWorker> {
  // The environment's names, filled from the options alone, so the one validation (config.ts) applies.
  const env: Record<string, string | undefined> = {
    REDIS_URL: opts.redisUrl,
    JOBSCOPE_PREFIX: opts.prefix,
    JOBSCOPE_SERVICES:
      opts.services &&
      Object.entries(opts.services)
        .map(([name, url]) => `${name}=${url}`)
        .join(','),
    JOBSCOPE_SIGNING_KEY_FILE: Array.isArray(opts.signingKeyFile) ? opts.signingKeyFile.join(',') : opts.signingKeyFile,
    JOBSCOPE_JWT_SECRET: opts.jwtSecret,
    JOBSCOPE_ISSUER: opts.issuer,
    JOBSCOPE_TOKEN_HEADER: opts.tokenHeader,
    JOBSCOPE_SHUTDOWN_TIMEOUT: str(opts.shutdownTimeout),
    JOBSCOPE_LOCK_DURATION: str(opts.lockDuration),
    JOBSCOPE_MAX_STALLS: str(opts.maxStalls),
    JOBSCOPE_RUNAWAY_GRACE: str(opts.runawayGrace),
    JOBSCOPE_TOKEN_MAX_LIFETIME: str(opts.tokenMaxLifetime),
    JOBSCOPE_STATE_DIR: opts.stateDir,
    LOG_LEVEL: opts.logLevel,
  };
  const config = loadConfig(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)));
  const registry =
    typeof opts.jobs === 'string'
      ? await loadRegistry(opts.jobs)
      : new Registry(Object.entries(opts.jobs).map(([name, def]) => registerDefinition(name, `(createWorker jobs.${name})`, def)));
  const logger = opts.logger ?? createLogger(config.logLevel);
  const runtime = new Runtime(config, registry, logger);
  try {
    await runtime.ready();
    if (runtime.keys.warning) logger.warn(runtime.keys.warning);
    opts.only?.forEach((name) => registry.get(name));
    await runtime.publish(Boolean(opts.schedules));
    if (opts.schedules) await runtime.syncSchedules();
    const workers = await runtime.startWorkers(opts.only);
    return { runtime, workers, close: () => runtime.close() };
  } catch (err) {
    await runtime.close();
    throw err;
  }
}
