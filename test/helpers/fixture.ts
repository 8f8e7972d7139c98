// One test set-up for a jobscope installation: a private redis-server, a jobs folder, a Runtime (workers and schedules when
// asked), the HTTP server with the admin and viewer logins, a createClient on the same Redis and prefix, and a connection
// of the test's own for the few checks of Redis internals a test makes on purpose. Tests read runs through the public
// surface: `fx.client` / `fx.wait` (createClient) and `fx.api` (the HTTP API).
//
//   const fx = await jobscopeFixture({ jobs: { 'hello.ts': `export default {...}` }, env: { JOBSCOPE_PREFIX: 'x' },
//                                      workers: true, server: true });
//   const runId = await fx.trigger('hello', { n: 1 });
//   const run = await fx.wait(runId);              // the run as createClient's run() reports it, once it has finished
//   const job = await fx.api.job('hello');         // GET /api/jobs/hello as the admin
//   await fx.close();
import type { KeyObject } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { createClient, type ClientTriggerOptions, type JobscopeClient, type RunView } from '../../src/index.ts';
import type { TokenClaims } from '../../src/interfaces.ts';
import { connect } from '../../src/redis/connect.ts';
import type { Runtime } from '../../src/runtime/runtime.ts';
import type { ServerOptions } from '../../src/server/app.ts';
import { startRedis, type TestRedis } from './redis.ts';
import { jobsDir, removeDir, testRuntime, type LogCapture } from './runtime.ts';
import { ADMIN, TestServer, type Answer } from './server.ts';
import { until } from './wait.ts';

type Login = { user: string; password: string } | string | null;

/** Which jobs a Runtime serves: all (true), these names, or these worker groups. */
export type WorkersOption = boolean | string[] | { only?: string[]; groups?: string[] };

export interface FixtureOptions {
  /** Job files (file name -> source) for a fresh folder, removed at close. */
  jobs?: Record<string, string>;
  /** Or an existing jobs folder (left in place at close). */
  dir?: string;
  /** The runtime's configuration (JOBSCOPE_PREFIX, JOBSCOPE_SERVICES, REDIS_URL for a Redis not started here, ...). */
  env?: Record<string, string>;
  /** A redis-server the test started (and stops) itself; default: a private one, destroyed at close. */
  redisServer?: TestRedis;
  /** redis-server arguments for the private one. */
  redisArgs?: string[];
  /** Or a Redis the test runs in its own way (a Cluster, a Sentinel's master): its URL. No redis-server is started. */
  redisUrl?: string;
  /**
   * The runner's public key first: `envFromKey` starts what must verify with it (services) and returns the environment
   * naming them; the Runtime is then built again with that environment (the same signing key, from the state folder).
   */
  envFromKey?: (verifyKey: KeyObject, redis: { url: string; prefix: string }) => Promise<Record<string, string>>;
  /** Start workers: every job (true), these jobs, or these worker groups. Default: none. */
  workers?: WorkersOption;
  /** Write the jobs' schedules into Redis (what the process owning the schedules does at start). */
  schedules?: boolean;
  /** Serve the HTTP API and dashboard (with the admin and viewer logins of helpers/server.ts, and these options). */
  server?: boolean | Partial<ServerOptions>;
}

/** The HTTP API, as a login (admin by default). */
export class Api {
  constructor(
    readonly server: TestServer,
    private readonly login: Login = ADMIN,
  ) {}

  /** The same API as another login (or none: null). */
  as(login: Login): Api {
    return new Api(this.server, login);
  }

  private auth() {
    return this.login === null ? {} : { auth: this.login };
  }

  get(path: string): Promise<Answer> {
    return this.server.request(path, this.auth());
  }

  post(path: string, json?: unknown): Promise<Answer> {
    return this.server.request(path, { method: 'POST', ...this.auth(), ...(json === undefined ? {} : { json }) });
  }

  /** POST /api/jobs/:name/runs; the run id (throws unless 202). */
  async trigger(job: string, data: unknown = {}, extra: Record<string, unknown> = {}): Promise<string> {
    const res = await this.post(`/api/jobs/${encodeURIComponent(job)}/runs`, { data, ...extra });
    if (res.status !== 202) throw new Error(`POST /api/jobs/${job}/runs answered ${res.status}: ${res.text}`);
    return res.body.runId as string;
  }

  /** GET /api/runs/:runId (throws unless 200). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the API's JSON, as the tests read it
  async run(runId: string): Promise<any> {
    return this.ok(`/api/runs/${encodeURIComponent(runId)}`);
  }

  /** Polls GET /api/runs/:runId until `check` holds for the run (bounded); the run. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the API's JSON, as the tests read it
  async waitFor(runId: string, check: (run: any) => boolean, timeoutMs = 15_000, what?: string): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const run = await this.run(runId);
      if (check(run)) return run;
      if (Date.now() > deadline)
        throw new Error(`run ${runId} still ${run.state} after ${timeoutMs} ms${what ? ` (waiting for ${what})` : ''}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Polls GET /api/runs/:runId until the run has completed or failed (bounded); the run. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the API's JSON, as the tests read it
  wait(runId: string, timeoutMs?: number): Promise<any> {
    return this.waitFor(runId, (r: { state: string }) => r.state === 'completed' || r.state === 'failed', timeoutMs);
  }

  /** GET /api/jobs/:name (throws unless 200). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the API's JSON, as the tests read it
  async job(name: string): Promise<any> {
    return this.ok(`/api/jobs/${encodeURIComponent(name)}`);
  }

  /** GET /api/tokens (throws unless 200). */
  async tokens(): Promise<{ jti: string; job: string; run: string; att: number; aud: string[]; scope: string; exp: string }[]> {
    return this.ok('/api/tokens');
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the API's JSON, as the tests read it
  private async ok(path: string): Promise<any> {
    const res = await this.get(path);
    if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${res.text}`);
    return res.body;
  }
}

export interface Fixture {
  /** The redis-server (stop/start it for outage tests); not with `redisUrl`. */
  redisServer: TestRedis;
  /** The test's own connection to that Redis, for checks of internals a test makes on purpose (TTLs, indexes, counts). */
  redis: Redis;
  redisUrl: string;
  prefix: string;
  /** The jobs folder. */
  dir: string;
  runtime: Runtime;
  logs: LogCapture;
  /** The HTTP server (with `server`). */
  server: TestServer;
  /** Its API as the admin (`fx.api.as(VIEWER)` for another login). */
  api: Api;
  /** createClient on the same Redis and prefix, with the jobs folder's definitions (opened on first use). */
  client: JobscopeClient;
  /**
   * A job's BullMQ queue on the test's own connection, for the checks of the storage layer a test makes on purpose (a
   * scheduler entry, the queue's own paused flag, a run added raw to bypass validation). Not the runtime's.
   */
  queue(job: string): Queue;
  /** Triggers through the client (`triggeredBy: 'client'`); the run id. */
  trigger(job: string, data?: unknown, opts?: Omit<ClientTriggerOptions, 'wait'>): Promise<string>;
  /** The run as createClient reports it (state, outcome, result, error, logs, claims). */
  run(runId: string): Promise<RunView>;
  /** Polls the run through the client until it has completed or failed (bounded); the run. */
  wait(runId: string, timeoutMs?: number): Promise<RunView>;
  /** Polls the run through the client until `check` holds for it (bounded); the run. */
  waitFor(runId: string, check: (run: RunView) => boolean, timeoutMs?: number, what?: string): Promise<RunView>;
  /**
   * Another Runtime on the same Redis and folder, closed with the fixture if not before: with the fixture's environment,
   * or with `env` instead (REDIS_URL aside).
   */
  another(opts?: { env?: Record<string, string>; workers?: WorkersOption }): Promise<Runtime>;
  /** Another HTTP server on the runtime (or on `on`, one of `another`'s), with these options, closed with the fixture. */
  startServer(opts?: Partial<ServerOptions>, on?: Runtime): Promise<TestServer>;
  close(): Promise<void>;
}

/** Makes `runtime.close()` safe to call again (a test may close it itself: the fixture's close does not close it twice). */
function closeOnce(runtime: Runtime): Runtime {
  const close = runtime.close.bind(runtime);
  let closed: Promise<void> | undefined;
  runtime.close = () => (closed ??= close());
  return runtime;
}

async function startWorkers(runtime: Runtime, workers: WorkersOption | undefined): Promise<void> {
  if (!workers) return;
  if (workers === true) await runtime.startWorkers();
  else if (Array.isArray(workers)) await runtime.startWorkers(workers);
  else await runtime.startWorkers(workers.only, workers.groups);
}

export async function jobscopeFixture(opts: FixtureOptions = {}): Promise<Fixture> {
  const ownsRedis = !opts.redisServer && !opts.redisUrl;
  const redisServer = opts.redisServer ?? (opts.redisUrl ? undefined : await startRedis(opts.redisArgs));
  const baseUrl = opts.redisUrl ?? redisServer!.url;
  const ownsDir = !opts.dir;
  const dir = opts.dir ?? jobsDir(opts.jobs ?? {});
  const toClose: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const step of toClose.splice(0).reverse()) await step().catch(() => undefined);
  };
  toClose.push(async () => {
    if (ownsRedis) await redisServer!.destroy();
    if (ownsDir) removeDir(dir);
  });
  try {
    let env = { ...opts.env };
    let built = await testRuntime({ redisUrl: baseUrl, jobsDir: dir, env });
    if (opts.envFromKey) {
      const { config, keys } = built.runtime;
      const more = await opts
        .envFromKey(keys.current.verifyKey, { url: config.redisUrl, prefix: config.prefix })
        .finally(() => built.runtime.close());
      env = { ...env, ...more };
      built = await testRuntime({ redisUrl: baseUrl, jobsDir: dir, env });
    }
    const { runtime, logs } = built;
    closeOnce(runtime);
    toClose.push(() => runtime.close());
    await startWorkers(runtime, opts.workers);
    if (opts.schedules) await runtime.syncSchedules();
    const redisUrl = runtime.config.redisUrl;
    const prefix = runtime.config.prefix;
    const redis = connect(redisUrl);
    toClose.push(async () => redis.disconnect());

    const queues = new Map<string, Queue>();
    toClose.push(async () => {
      for (const q of queues.values()) await q.close();
    });
    const queueOf = (job: string) => {
      let q = queues.get(job);
      if (!q) queues.set(job, (q = new Queue(job, { connection: redis, prefix })));
      return q;
    };

    const servers: TestServer[] = [];
    toClose.push(async () => {
      for (const s of servers.splice(0)) await s.close();
    });
    const startServer = async (serverOpts: Partial<ServerOptions> = {}, on: Runtime = runtime) => {
      const s = await TestServer.start(on, serverOpts);
      servers.push(s);
      return s;
    };
    const server = opts.server ? await startServer(opts.server === true ? {} : opts.server) : undefined;
    const api = server && new Api(server);

    let client: JobscopeClient | undefined;
    toClose.push(async () => client?.close());
    const clientOf = () => (client ??= createClient({ redisUrl, prefix, jobs: dir }));

    const waitFor = async (runId: string, check: (run: RunView) => boolean, timeoutMs = 15_000, what?: string) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const run = await clientOf().run(runId);
        if (check(run)) return run;
        if (Date.now() > deadline)
          throw new Error(`run ${runId} still ${run.state} after ${timeoutMs} ms${what ? ` (waiting for ${what})` : ''}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };

    const others: Runtime[] = [];
    toClose.push(async () => {
      for (const r of others.splice(0)) await r.close().catch(() => undefined);
    });

    const fixture: Fixture = {
      get redisServer(): TestRedis {
        if (!redisServer) throw new Error('this fixture runs on a Redis the test started itself (redisUrl)');
        return redisServer;
      },
      redis,
      redisUrl,
      prefix,
      dir,
      runtime,
      logs,
      get server(): TestServer {
        if (!server) throw new Error('this fixture has no server: jobscopeFixture({ server: true })');
        return server;
      },
      get api(): Api {
        if (!api) throw new Error('this fixture has no server: jobscopeFixture({ server: true })');
        return api;
      },
      get client(): JobscopeClient {
        return clientOf();
      },
      queue: queueOf,
      async trigger(job, data = {}, triggerOpts = {}) {
        return (await clientOf().trigger(job, data as never, triggerOpts)).runId;
      },
      run: (runId) => clientOf().run(runId),
      wait: (runId, timeoutMs) => waitFor(runId, (r) => r.state === 'completed' || r.state === 'failed', timeoutMs),
      waitFor,
      async another(more = {}) {
        const { runtime: other } = await testRuntime({ redisUrl: baseUrl, jobsDir: dir, env: more.env ?? env });
        others.push(closeOnce(other));
        await startWorkers(other, more.workers);
        return other;
      },
      startServer,
      close,
    };
    return fixture;
  } catch (err) {
    await close();
    throw err;
  }
}

/** The tokens runs of a `heldTokenJob` were given, by run id (the handlers run in this process). */
type HeldTokens = Record<string, { raw: string; claims: TokenClaims }>;
const heldTokens = (): HeldTokens => ((globalThis as { __jobscopeHeldTokens?: HeldTokens }).__jobscopeHeldTokens ??= {});

/**
 * A job file's source whose runs keep their token where `heldToken` finds it and run until cancelled (or their runtime
 * closes): a real token, minted for a real run, live while the run is, revoked at once by cancelling the run.
 * `fields`: the definition's other fields (its `token` at least).
 */
export function heldTokenJob(fields = `token: { audience: ['svc'] }, concurrency: 10`): string {
  return `export default { ${fields}, async run(ctx) {
    (globalThis.__jobscopeHeldTokens ??= {})[ctx.run.id] = { raw: ctx.token.reveal(), claims: ctx.token.claims };
    await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
  } };`;
}

/** The token a run of a `heldTokenJob` was given, once the run has started (bounded). */
export async function heldToken(runId: string, timeoutMs = 10_000): Promise<{ runId: string; raw: string; claims: TokenClaims }> {
  await until(() => runId in heldTokens(), timeoutMs, `run ${runId} to start with its token`);
  return { runId, ...heldTokens()[runId] };
}

export { until };
