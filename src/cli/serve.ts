// `jobscope start | worker | server`: a serving process from start-up to shutdown. It loads the jobs, starts what the
// mode asks for (an embedded Redis, workers, the HTTP server, a jobs-folder watch) and, on SIGINT/SIGTERM, stops them in
// order within JOBSCOPE_SHUTDOWN_TIMEOUT.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { JobFilesError } from '../errors.ts';
import { loadRegistry } from '../jobs/registry.ts';
import { watchJobs, type JobsWatcher } from '../jobs/watch.ts';
import { captureConsole, type Logger } from '../log.ts';
import { redactUrl } from '../redact.ts';
import { isOutage, refusalOf } from '../redis/connect.ts';
import { Runtime } from '../runtime/runtime.ts';
import { adminCredentials, createApp, listen } from '../server/app.ts';
import { list_, UsageError, type CliIO, type Env } from './common.ts';
import { isListening, startEmbeddedRedis, type EmbeddedRedis } from './redis-server.ts';

export type ServeMode = 'start' | 'worker' | 'server';

export interface ServeFlags {
  only?: string;
  group?: string;
  watch?: boolean;
}

/** What a serving process holds, so a failure half-way through start-up can still close all of it. */
interface Serving {
  embedded?: EmbeddedRedis;
  runtime?: Runtime;
  server?: Server;
  watcher?: JobsWatcher;
}

/** Time beyond JOBSCOPE_SHUTDOWN_TIMEOUT for handing back runs and closing connections before the process exits anyway. */
const SHUTDOWN_SLACK_MS = 5000;

export async function serve(env: Env, mode: ServeMode, flags: ServeFlags, io: CliIO): Promise<number> {
  const serving: Serving = {};
  // Every line one JSON object: what a library prints on the console goes into the log (a Redis error into the Redis log).
  const restoreConsole = captureConsole(env.logger, (err) => {
    const redisLog = serving.runtime?.redisLog;
    if (!redisLog || !(isOutage(err) || refusalOf(err))) return false;
    redisLog.note(err, { source: 'console' });
    return true;
  });
  try {
    try {
      await startServing(env, mode, flags, io, serving);
    } catch (err) {
      await stopServing(serving);
      throw err;
    }
    return await shutDownOnSignal(env, serving);
  } finally {
    restoreConsole();
  }
}

/** Waits for a signal, then stops; past the deadline (plus time to close connections) it exits anyway, the embedded Redis last. */
async function shutDownOnSignal({ config, logger }: Env, serving: Serving): Promise<number> {
  const sig = await untilSignal(logger);
  logger.info({ signal: sig, deadlineMs: config.shutdownTimeoutMs }, 'shutting down: no new runs; waiting for active runs');
  // The workers hand back what is still active at the deadline.
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), config.shutdownTimeoutMs + SHUTDOWN_SLACK_MS)));
  const outcome = await Promise.race([stopServing(serving).then(() => 'stopped' as const), late]);
  clearTimeout(timer);
  if (outcome === 'late') {
    logger.error({ deadlineMs: config.shutdownTimeoutMs + SHUTDOWN_SLACK_MS }, 'shutdown passed its deadline: exiting now');
    await serving.embedded?.stop();
    return 1;
  }
  logger.info('stopped');
  return 0;
}

/** Resolves on the first SIGINT/SIGTERM; any signal after that exits at once. */
function untilSignal(logger: Logger): Promise<string> {
  return new Promise((resolve) => {
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
    const first = (sig: NodeJS.Signals) => {
      for (const s of signals) {
        process.off(s, first);
        process.once(s, () => {
          logger.warn('second signal: exiting now');
          process.exit(130);
        });
      }
      resolve(sig);
    };
    for (const s of signals) process.on(s, first);
  });
}

/** Stops in order: no new requests, the workers (hand-backs and revocations need Redis), and the embedded Redis last. */
async function stopServing({ server, runtime, embedded, watcher }: Serving): Promise<void> {
  try {
    watcher?.close();
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await closed;
    }
    await runtime?.close();
  } finally {
    await embedded?.stop();
  }
}

async function startServing(env: Env, mode: ServeMode, flags: ServeFlags, io: CliIO, serving: Serving): Promise<void> {
  const { config, logger } = env;
  const registry = await loadRegistry(config.jobsDir);
  if (mode === 'start') serving.embedded = await startEmbeddedIfNeeded(env);
  const runtime = new Runtime(config, registry, logger);
  await runtime.ready();
  serving.runtime = runtime;
  await runtime.control.checkProject(true);
  if (runtime.keys.warning) logger.warn(runtime.keys.warning);
  logger.info(
    { redis: redactUrl(config.redisUrl), prefix: config.prefix, project: config.project, jobs: registry.names },
    `loaded ${registry.names.length} job(s) of project "${config.project}" from ${config.jobsDir} (Redis prefix "${config.prefix}")`,
  );
  // Schedules first: a fire that came due while everything was down, of a schedule since removed from jobs/, is
  // removed before a worker of this process could take it.
  if (mode !== 'worker') await runtime.syncSchedules();
  // What clients without a jobs folder validate and enqueue with (createClient); start/server own the list.
  await runtime.publish(mode !== 'worker' && !flags.only);
  if (mode !== 'server') {
    const served = runtime.servedJobs(list_(flags.only), list_(flags.group));
    await runtime.startWorkers(list_(flags.only), list_(flags.group));
    const unserved = registry.names.filter((n) => !served.includes(n));
    logger.info({ jobs: served, ...(unserved.length ? { notServedHere: unserved } : {}) }, 'workers started');
  }
  if (mode !== 'worker') serving.server = await startServer(env, runtime, io);
  if (flags.watch) {
    if (mode === 'server') throw new UsageError('--watch is for start and worker (the processes that run jobs)');
    serving.watcher = watchAndReload(env, runtime, flags, mode === 'start' && !flags.only);
  }
}

/** Without REDIS_URL and with nothing on the embedded port, a private redis-server under the state folder. */
async function startEmbeddedIfNeeded({ config, logger }: Env): Promise<EmbeddedRedis | undefined> {
  const port = config.embeddedRedisPort;
  if (config.redisUrlExplicit || (await isListening('127.0.0.1', port))) return undefined;
  const dir = path.join(config.stateDir, 'redis');
  const embedded = await startEmbeddedRedis(dir, port);
  logger.info({ dir, pid: embedded.pid }, `no REDIS_URL and nothing on 127.0.0.1:${port}: started an embedded redis-server`);
  return embedded;
}

/** The dashboard, API and JWKS; a generated admin login is printed once, on the terminal only. */
async function startServer({ config, logger }: Env, runtime: Runtime, io: CliIO): Promise<Server> {
  // With a users file and no JOBSCOPE_USER, the file's users are the logins: no generated admin password.
  const admin = config.usersFile && !config.user ? undefined : adminCredentials(config.user, config.password, config.stateDir);
  const viewer = config.viewerUser && config.viewerPassword ? { user: config.viewerUser, password: config.viewerPassword } : undefined;
  const app = createApp({ ...runtime.serverParts(), logger, admin, viewer, introspect: config, usersFile: config.usersFile });
  const server = await listen(app, config.port, config.host);
  const addr = server.address() as AddressInfo;
  const url = `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${addr.port}`;
  logger.info({ url }, `dashboard at ${url}/dashboard`);
  if (admin?.generated) {
    // Never an open dashboard, never a password in the log stream.
    io.err(
      `\n  jobscope: no JOBSCOPE_USER/JOBSCOPE_PASSWORD set; generated a login (kept for the next starts in ${admin.file}):\n` +
        `    user: ${admin.user}\n    password: ${admin.password}\n`,
    );
  } else if (admin?.file) {
    io.err(`\n  jobscope: no JOBSCOPE_USER/JOBSCOPE_PASSWORD set; log in as ${admin.user} with the password in ${admin.file}\n`);
  }
  return server;
}

/** `--watch`: added, changed and removed job files are reloaded; a file that fails keeps its previous version. */
function watchAndReload({ config, logger }: Env, runtime: Runtime, flags: ServeFlags, ownsSchedules: boolean): JobsWatcher {
  const watcher = watchJobs(config.jobsDir, async (version, changes) => {
    try {
      const { jobs, errors } = await runtime.reload(config.jobsDir, version, {
        only: list_(flags.only),
        groups: list_(flags.group),
        ownsSchedules,
        changes,
      });
      if (errors.length)
        logger.error(
          { files: errors.length },
          `jobs reloaded except what failed (kept its previous version):\n${new JobFilesError(errors).message}`,
        );
      else logger.info({ jobs }, 'jobs reloaded');
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'could not reload the jobs');
    }
  });
  logger.info({ dir: config.jobsDir }, 'watching the jobs folder: added, changed and removed job files are reloaded');
  return watcher;
}
