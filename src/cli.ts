// The command line, thin: parses arguments and calls the modules that own each concern.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { JobFilesError, JobscopeError } from './errors.ts';
import { watchJobs, type JobsWatcher } from './jobs/watch.ts';
import { loadRegistry, type Registry } from './jobs/registry.ts';
import { describeSchedule } from './jobs/schedule.ts';
import { captureConsole, type Logger } from './log.ts';
import { isListening, startEmbeddedRedis, type EmbeddedRedis } from './cli/redis-server.ts';
import { isOutage, refusalOf } from './redis/connect.ts';
import { redactUrl } from './redact.ts';
import { Runtime } from './runtime/runtime.ts';
import { environment, list_, openControl, UsageError, type CliIO, type Env } from './cli/common.ts';
import { trigger } from './cli/trigger.ts';
import { usersCommand } from './cli/users.ts';
import { adminCredentials, createApp, listen } from './server/app.ts';
import { writeNewKey } from './token/signing-keys.ts';
import { createJobTokenVerifier, TokenRejectedError } from './token/verify.ts';
import { enableTracing } from './trace.ts';

const USAGE = `jobscope <command>

  start [--watch]               workers + scheduler + HTTP server (dashboard, API, JWKS); --watch reloads changed job files
  worker [--only a,b] [--group g,h] [--watch]
                                workers only (scale out: run many); --group: the jobs of these worker groups
  workers [--json]              the worker processes (heartbeats): host, pid, versions, groups, jobs, active runs
  server                        HTTP server + scheduler sync only
  list [--json]                 the registered jobs, schedules and next fire times
  trigger <job> [--data JSON] [--delay 5m | --at ISO] [--priority N] [--key K] [--wait] [--timeout 5m]
                                enqueue a run; --wait prints the result as JSON, exit 0 on success, 1 on any
                                other outcome; exit 3 when overlap 'skip' refuses it; with no worker serving the
                                job, --wait says so at once and gives up after 30 s unless --timeout is given
  token verify <jwt> [--audience A]
                                verify a token as a service would; exit 0 valid, 1 invalid with the reason
  pause <job> | resume <job>    stop/start a job's schedule and queue (survives restarts)
  cancel <runId>                cancel a waiting or running run, on whichever host runs it
  keys generate [--dir DIR]     write a new P-256 signing key (rotation)
  import xxl-job --from <mysql://...|dump.sql> [--out jobs] [--dry-run] [--tz Z] [--audience svc] [--report f.json] [--users]
                                one job file per xxl-job job (idempotent; edited files are kept); see README
  users add <name> --role admin|operator|viewer [--groups a,b] [--password-stdin] [--replace]
                                add a login to JOBSCOPE_USERS_FILE (scrypt hash); without --password-stdin a password is
                                generated and printed once; --groups limits it to the jobs of those groups
  users list [--json]           the logins of JOBSCOPE_USERS_FILE: name, role, groups (never a hash)
  users remove <name>           remove a login from JOBSCOPE_USERS_FILE (a running server refuses it at once)

Configuration: environment variables (and a .env file); see README.md.`;

const stdio: CliIO = {
  out: (l) => process.stdout.write(l + '\n'),
  err: (l) => process.stderr.write(l + '\n'),
};

async function openRuntime({ config, logger }: Env, registry: Registry): Promise<Runtime> {
  const runtime = new Runtime(config, registry, logger);
  await runtime.ready();
  return runtime;
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

/** What a serving process holds, so a failure half-way through start-up can still close all of it. */
interface Serving {
  embedded?: EmbeddedRedis;
  runtime?: Runtime;
  server?: import('node:http').Server;
  watcher?: JobsWatcher;
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

interface ServeFlags {
  only?: string;
  group?: string;
  watch?: boolean;
}

async function serve(env: Env, mode: 'start' | 'worker' | 'server', flags: ServeFlags, io: CliIO): Promise<number> {
  const serving: Serving = {};
  // Every line one JSON object: what a library prints on the console goes into the log (a Redis error into the Redis log).
  const restoreConsole = captureConsole(env.logger, (err) => {
    const redisLog = serving.runtime?.redisLog;
    if (!redisLog || !(isOutage(err) || refusalOf(err))) return false;
    redisLog.note(err, { source: 'console' });
    return true;
  });
  try {
    return await serveUntilSignal(env, mode, flags, io, serving);
  } finally {
    restoreConsole();
  }
}

async function serveUntilSignal(
  env: Env,
  mode: 'start' | 'worker' | 'server',
  flags: ServeFlags,
  io: CliIO,
  serving: Serving,
): Promise<number> {
  try {
    await startServing(env, mode, flags, io, serving);
  } catch (err) {
    await stopServing(serving);
    throw err;
  }
  const { config, logger } = env;
  const sig = await untilSignal(logger);
  logger.info({ signal: sig, deadlineMs: config.shutdownTimeoutMs }, 'shutting down: no new runs; waiting for active runs');
  // The workers hand back what is still active at the deadline; past it (plus time to close connections) exit anyway, the
  // embedded Redis last.
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

/** Time beyond JOBSCOPE_SHUTDOWN_TIMEOUT for handing back runs and closing connections before the process exits anyway. */
const SHUTDOWN_SLACK_MS = 5000;

async function startServing(env: Env, mode: 'start' | 'worker' | 'server', flags: ServeFlags, io: CliIO, serving: Serving): Promise<void> {
  const { config, logger } = env;
  const registry = await loadRegistry(config.jobsDir);
  const port = config.embeddedRedisPort;
  if (mode === 'start' && !config.redisUrlExplicit && !(await isListening('127.0.0.1', port))) {
    serving.embedded = await startEmbeddedRedis(path.join(config.stateDir, 'redis'), port);
    logger.info(
      { dir: path.join(config.stateDir, 'redis'), pid: serving.embedded.pid },
      `no REDIS_URL and nothing on 127.0.0.1:${port}: started an embedded redis-server`,
    );
  }
  const runtime = (serving.runtime = await openRuntime(env, registry));
  await runtime.control.checkProject(true);
  if (runtime.keys.warning) logger.warn(runtime.keys.warning);
  logger.info(
    { redis: redactUrl(config.redisUrl), prefix: config.prefix, project: config.project, jobs: registry.names },
    `loaded ${registry.names.length} job(s) of project "${config.project}" from ${config.jobsDir} (Redis prefix "${config.prefix}")`,
  );

  let server: import('node:http').Server | undefined;
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
  if (mode !== 'worker') {
    // With a users file and no JOBSCOPE_USER, the file's users are the logins: no generated admin password.
    const admin = config.usersFile && !config.user ? undefined : adminCredentials(config.user, config.password, config.stateDir);
    const viewer = config.viewerUser && config.viewerPassword ? { user: config.viewerUser, password: config.viewerPassword } : undefined;
    const app = createApp({ ...runtime.serverParts(), logger, admin, viewer, introspect: config, usersFile: config.usersFile });
    server = await listen(app, config.port, config.host);
    const addr = server.address() as import('node:net').AddressInfo;
    const url = `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${addr.port}`;
    logger.info({ url }, `dashboard at ${url}/dashboard`);
    if (admin?.generated) {
      // Printed once, on the terminal only: never an open dashboard, never a password in the log stream.
      io.err(
        `\n  jobscope: no JOBSCOPE_USER/JOBSCOPE_PASSWORD set; generated a login (kept for the next starts in ${admin.file}):\n` +
          `    user: ${admin.user}\n    password: ${admin.password}\n`,
      );
    } else if (admin?.file) {
      io.err(`\n  jobscope: no JOBSCOPE_USER/JOBSCOPE_PASSWORD set; log in as ${admin.user} with the password in ${admin.file}\n`);
    }
  }

  serving.server = server;
  if (flags.watch) {
    if (mode === 'server') throw new UsageError('--watch is for start and worker (the processes that run jobs)');
    const ownsSchedules = mode === 'start' && !flags.only;
    serving.watcher = watchJobs(config.jobsDir, async (version, changes) => {
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
  }
}

async function list(env: Env, json: boolean, io: CliIO): Promise<number> {
  const registry = await loadRegistry(env.config.jobsDir);
  const control = await openControl(env, registry);
  try {
    const jobs = await control.summaries();
    if (json) {
      io.out(JSON.stringify(jobs, null, 2));
      return 0;
    }
    for (const j of jobs) {
      io.out(`${j.name}${j.paused ? ' (paused)' : ''}`);
      if (j.description) io.out(`  ${j.description}`);
      io.out(`  schedule: ${describeSchedule(j.schedule ?? undefined)}`);
      if (j.nextRuns.length) io.out(`  next: ${j.nextRuns.slice(0, 3).join(', ')}`);
    }
    if (jobs.length === 0) io.out(`no jobs in ${env.config.jobsDir}`);
    return 0;
  } finally {
    await control.close();
  }
}

async function verifyCommand(env: Env, token: string | undefined, audience: string | undefined, io: CliIO): Promise<number> {
  if (!token) throw new UsageError('usage: jobscope token verify <jwt> [--audience A]');
  const { config } = env;
  const { loadKeys } = await import('./token/signing-keys.ts');
  const { currentJwksAt } = await import('./token/jwks.ts');
  const keys = loadKeys(config);
  let aud = audience;
  if (!aud) {
    // Without --audience, check the token against its own first audience: every other check still applies.
    try {
      const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { aud?: string | string[] };
      aud = Array.isArray(payload.aud) ? payload.aud[0] : payload.aud;
    } catch {
      aud = undefined;
    }
  }
  const { LIFETIME_GRACE_MS } = await import('./token/mint.ts');
  const verifier = createJobTokenVerifier({
    audience: aud || '(none)',
    issuer: config.issuer,
    prefix: config.prefix,
    redis: config.redisUrl,
    // This runner's cap, not the verifier's default: tokens it hands out are accepted whatever JOBSCOPE_TOKEN_MAX_LIFETIME is.
    maxLifetime: (config.tokenMaxLifetimeMs + LIFETIME_GRACE_MS) / 1000 + 5,
    // Configured keys plus keys retired by a rotation whose tokens may still be live (as GET /.well-known/jwks.json serves).
    ...(keys.alg === 'HS256' ? { secret: config.jwtSecret! } : { jwks: await currentJwksAt(keys, config.redisUrl, config.prefix) }),
  });
  try {
    const claims = await verifier.verify(token);
    io.out(JSON.stringify({ valid: true, claims }, null, 2));
    return 0;
  } catch (err) {
    const e = err instanceof TokenRejectedError ? err : new TokenRejectedError('malformed', (err as Error).message);
    io.out(JSON.stringify({ valid: false, reason: e.code, message: e.message }, null, 2));
    return 1;
  } finally {
    await verifier.close();
  }
}

async function workersCommand(env: Env, json: boolean, io: CliIO): Promise<number> {
  const registry = await loadRegistry(env.config.jobsDir);
  const control = await openControl(env, registry);
  try {
    const workers = await control.liveWorkers();
    if (json) {
      io.out(JSON.stringify(workers, null, 2));
      return 0;
    }
    if (workers.length === 0) io.out('no worker has sent a heartbeat in the last day');
    for (const w of workers) {
      io.out(`${w.alive ? 'alive' : 'DEAD '}  ${w.host} pid ${w.pid}  jobscope ${w.versions.jobscope}, node ${w.versions.node}`);
      io.out(`       groups: ${w.groups.join(', ') || '(none)'}; jobs: ${w.jobs.join(', ') || '(none)'}`);
      io.out(`       active: ${w.active.join(', ') || '(none)'}; started ${w.startedAt}; last seen ${w.lastSeen}`);
    }
    return 0;
  } finally {
    await control.close();
  }
}

async function jobCommand(env: Env, command: 'pause' | 'resume', name: string | undefined, io: CliIO): Promise<number> {
  if (!name) throw new UsageError(`usage: jobscope ${command} <job>`);
  const registry = await loadRegistry(env.config.jobsDir);
  const control = await openControl(env, registry);
  try {
    await (command === 'pause' ? control.pause(name) : control.resume(name));
    io.out(`${name}: ${command === 'pause' ? 'paused' : 'resumed'}`);
    return 0;
  } finally {
    await control.close();
  }
}

async function cancelCommand(env: Env, runId: string | undefined, io: CliIO): Promise<number> {
  if (!runId) throw new UsageError('usage: jobscope cancel <runId>');
  const registry = await loadRegistry(env.config.jobsDir);
  const control = await openControl(env, registry);
  try {
    const result = await control.cancel(runId, 'cancelled from the CLI');
    io.out(JSON.stringify(result));
    return 0;
  } finally {
    await control.close();
  }
}

export type { CliIO } from './cli/common.ts';

export async function main(argv: string[], io: CliIO = stdio): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        data: { type: 'string' },
        delay: { type: 'string' },
        at: { type: 'string' },
        priority: { type: 'string' },
        key: { type: 'string' },
        wait: { type: 'boolean' },
        timeout: { type: 'string' },
        json: { type: 'boolean' },
        only: { type: 'string' },
        group: { type: 'string' },
        watch: { type: 'boolean' },
        audience: { type: 'string' },
        dir: { type: 'string' },
        role: { type: 'string' },
        groups: { type: 'string' },
        'password-stdin': { type: 'boolean' },
        replace: { type: 'boolean' },
        from: { type: 'string' },
        out: { type: 'string' },
        'dry-run': { type: 'boolean' },
        tz: { type: 'string' },
        report: { type: 'string' },
        users: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    io.err(`jobscope: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (!command || values.help) {
    io.out(USAGE);
    return command || values.help ? 0 : 2;
  }
  // OTEL_EXPORTER_OTLP_ENDPOINT set: trace the runs, attempts and calls of this process (trace.ts); flushed at the end.
  const tracing = ['start', 'worker', 'server', 'trigger'].includes(command) ? await enableTracing() : undefined;
  try {
    switch (command) {
      case 'start':
      case 'worker':
      case 'server':
        return await serve(environment(), command, { only: values.only, group: values.group, watch: values.watch }, io);
      case 'workers':
        return await workersCommand(environment('warn'), Boolean(values.json), io);
      case 'list':
        return await list(environment('warn'), Boolean(values.json), io);
      case 'trigger':
        return await trigger(environment('warn'), rest[0], values, io);
      case 'pause':
      case 'resume':
        return await jobCommand(environment('warn'), command, rest[0], io);
      case 'cancel':
        return await cancelCommand(environment('warn'), rest[0], io);
      case 'token':
        if (rest[0] !== 'verify') throw new UsageError('usage: jobscope token verify <jwt> [--audience A]');
        return await verifyCommand(environment('warn'), rest[1], values.audience, io);
      case 'import': {
        const { importCommand } = await import('./import/cli.ts');
        await importCommand(rest, values, environment('warn').config.usersFile, io);
        return 0;
      }
      case 'users':
        return await usersCommand(environment('warn'), rest, values, io);
      case 'keys': {
        if (rest[0] !== 'generate') throw new UsageError('usage: jobscope keys generate [--dir DIR]');
        const dir = path.resolve(values.dir ?? 'keys');
        const { file, kid } = writeNewKey(dir);
        io.out(`wrote ${file} (kid ${kid})\nset JOBSCOPE_SIGNING_KEY_FILE=${dir} to sign with the newest key in that folder`);
        return 0;
      }
      default:
        throw new UsageError(`unknown command "${command}"\n\n${USAGE}`);
    }
  } catch (err) {
    if (err instanceof UsageError || (err instanceof JobscopeError && err.code === 'ERR_USAGE')) {
      io.err(`jobscope: ${err.message}`);
      return 2;
    }
    if (err instanceof JobscopeError) {
      const issues = (err as { issues?: { path: string; message: string }[] }).issues;
      io.err(`jobscope: ${err.message}`);
      if (issues && command === 'trigger') io.out(JSON.stringify({ error: err.code, issues }, null, 2));
      return 1;
    }
    io.err(`jobscope: ${(err as Error).message}`);
    return 1;
  } finally {
    await tracing?.shutdown().catch(() => undefined);
  }
}
