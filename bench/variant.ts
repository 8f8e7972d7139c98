// One measurement, in a process of its own (so no variant inherits another's JIT state, hooks or connections); the
// orchestrator (throughput.ts) runs these one after another on one private Redis and reads the last stdout line (JSON).
//   node --import tsx bench/variant.ts <kind> <variant> --redis <url> [--jobs N] [--concurrency 1,10,50] [--samples N]
// kinds: throughput (raw | ceiling | naive | naive-hs256 | jobscope-es256 | jobscope-hs256),
//        e2e (raw | naive | jobscope-es256 | jobscope-hs256),
//        latency (raw | jobscope), drift (jobscope), idle (jobscope)
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Queue, Worker, type Job } from 'bullmq';
import got from 'got';
import jwt from 'jsonwebtoken';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config.ts';
import { loadRegistry } from '../src/jobs/registry.ts';
import { createLogger } from '../src/log.ts';
import { startEmbeddedRedis } from '../src/cli/redis-server.ts';
import { monitorRedis } from '../test/helpers/redis.ts';
import { Runtime } from '../src/runtime/runtime.ts';
import { fireTime } from '../src/runtime/admission.ts';
import { freePort } from '../test/helpers/redis.ts';
import { jobsDir, removeDir } from '../test/helpers/runtime.ts';
import { redisCpuSeconds, sleep, type Measured } from './lib.ts';
import { benchClaims, naiveScope } from './naive.ts';

const [kind, variant] = process.argv.slice(2, 4);
const { values } = parseArgs({
  args: process.argv.slice(4),
  options: {
    redis: { type: 'string', default: '' },
    jobs: { type: 'string', default: '20000' },
    warmup: { type: 'string', default: '3000' },
    concurrency: { type: 'string', default: '1,10,50' },
    samples: { type: 'string', default: '200' },
    window: { type: 'string', default: '30' },
    files: { type: 'string', default: '200' },
    'time-limit': { type: 'string', default: '120' },
  },
});
const JOBS = Number(values.jobs);
const WARMUP = Number(values.warmup);
const LIMIT_MS = Number(values['time-limit']) * 1000;
const SECRET = 'a-long-enough-shared-secret-for-the-hs256-benchmark';
/** Same job options for every variant: the comparison is of the worker side. */
const OPTS = { removeOnComplete: true, removeOnFail: true };
const g = globalThis as Record<string, unknown>;

const admin = values.redis ? new Redis(values.redis) : undefined;

/**
 * Commands this process sends to Redis, on every ioredis connection (BullMQ's included: one ioredis in node_modules),
 * pipelined or not: each is a call Redis answers. A script's inner commands are Redis's, not sent: INFO commandstats
 * counts those too (`redisCommands` below).
 */
let sentCommands = 0;
const sendCommand = Redis.prototype.sendCommand;
Redis.prototype.sendCommand = function (this: Redis, ...args: Parameters<Redis['sendCommand']>) {
  sentCommands++;
  return sendCommand.apply(this, args);
};

/** Every command Redis ran (INFO commandstats `calls`, those run inside scripts included). */
async function commandsRun(redis: Redis): Promise<number> {
  let total = 0;
  for (const m of (await redis.info('commandstats')).matchAll(/^cmdstat_[^:]+:calls=(\d+)/gm)) total += Number(m[1]);
  return total;
}

async function preload(queueName: string, prefix: string, count: number, data: (i: number) => object = () => ({})) {
  const queue = new Queue(queueName, { connection: { url: values.redis } as never, prefix });
  for (let i = 0; i < count; i += 1000) {
    await queue.addBulk(Array.from({ length: Math.min(1000, count - i) }, (_, k) => ({ name: 'api', data: data(i + k), opts: OPTS })));
  }
  await queue.close();
}

/** Rate and CPU of `count` completions on `worker`, after `start()` lets it take the preloaded jobs. */
function measure(worker: Worker, count: number, start: () => void): Promise<Measured> {
  return new Promise((resolve, reject) => {
    let done = 0;
    let t0 = 0;
    let cpu: NodeJS.CpuUsage;
    let redisCpu0 = 0;
    let sent0 = 0;
    let run0 = 0;
    const timer = setTimeout(() => reject(new Error(`only ${done}/${count} done in ${LIMIT_MS} ms`)), LIMIT_MS);
    const onCompleted = () => {
      if (++done !== count) return;
      const ms = performance.now() - t0;
      const used = process.cpuUsage(cpu);
      worker.off('completed', onCompleted);
      clearTimeout(timer);
      const sent = sentCommands - sent0;
      void Promise.all([redisCpuSeconds(admin!), commandsRun(admin!)]).then(([s, ran]) =>
        resolve({
          rate: count / (ms / 1000),
          cpuUs: (used.user + used.system) / count,
          storeCpuUs: ((s - redisCpu0) * 1e6) / count,
          // The measuring process's own INFO (two before, one after the window) is left out.
          redisCalls: (sent - 1) / count,
          redisCommands: (ran - run0 - 2) / count,
        }),
      );
    };
    worker.on('completed', onCompleted);
    worker.on('failed', (_job, err) => reject(err));
    void Promise.all([redisCpuSeconds(admin!), commandsRun(admin!)]).then(([s, ran]) => {
      redisCpu0 = s;
      run0 = ran;
      sent0 = sentCommands;
      cpu = process.cpuUsage();
      t0 = performance.now();
      start();
    });
  });
}

/** A no-op (or one-HTTP-call) job file per concurrency, for jobscope. */
function jobFiles(concurrencies: number[], body: string): Record<string, string> {
  return Object.fromEntries(
    concurrencies.map((c) => [
      `noop${c}.ts`,
      `export default { token: { audience: ['svc'], scope: ['x:read'] }, concurrency: ${c}, ${body} };`,
    ]),
  );
}

async function jobscopeRuntime(dir: string, hs256: boolean, env: Record<string, string> = {}) {
  const config = loadConfig({
    REDIS_URL: values.redis!,
    JOBSCOPE_PREFIX: 'bench',
    JOBSCOPE_STATE_DIR: path.join(os.tmpdir(), 'jobscope-bench-state'),
    LOG_LEVEL: 'silent',
    ...(hs256 ? { JOBSCOPE_JWT_SECRET: SECRET } : {}),
    ...env,
  });
  const runtime = new Runtime(config, await loadRegistry(dir), createLogger('silent'));
  await runtime.ready();
  return runtime;
}

/** Per concurrency: preload, then rate and CPU of the worker taking them all. A warm-up pass first (JIT). */
async function throughput(): Promise<Record<string, Measured>> {
  const concurrencies = values.concurrency!.split(',').map(Number);
  const counts = (c: number) => (c === 1 ? Math.max(200, Math.round(JOBS / 10)) : c === 10 ? Math.round(JOBS / 2) : JOBS);
  const out: Record<string, Measured> = {};
  if (variant.startsWith('jobscope')) {
    const dir = jobsDir(jobFiles(concurrencies, 'async run() { return 1; }'));
    try {
      const runtime = await jobscopeRuntime(dir, variant === 'jobscope-hs256');
      const names = concurrencies.map((c) => `noop${c}`);
      const executor = await runtime.startWorkers(names);
      for (const name of names) await executor.takers.get(name)!.pause();
      const run = async (c: number, count: number) => {
        await preload(`noop${c}`, 'bench', count);
        const w = executor.takers.get(`noop${c}`)!;
        return measure(w, count, () => w.resume());
      };
      await run(concurrencies.at(-1)!, WARMUP);
      await executor.takers.get(`noop${concurrencies.at(-1)}`)!.pause();
      for (const c of concurrencies) {
        out[`c${c}`] = await run(c, counts(c));
        await executor.takers.get(`noop${c}`)!.pause();
      }
      const leftover = await admin!.keys('bench:token:*');
      await runtime.close();
      if (leftover.length) throw new Error(`${leftover.length} token keys left after the run`);
    } finally {
      removeDir(dir);
    }
    return out;
  }
  const naive = variant.startsWith('naive') ? naiveScope(values.redis!, variant === 'naive-hs256' ? 'HS256' : 'ES256', SECRET) : undefined;
  const naiveNoop = async (job: Job) => {
    const { jti, live } = naive!.begin(job);
    await live;
    try {
      return 1;
    } finally {
      await naive!.end(jti);
    }
  };
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const header = { alg: 'ES256' as const, typ: 'at+jwt', kid: 'bench' };
  const processors: Record<string, (job: Job) => Promise<unknown>> = {
    raw: async () => 1,
    // The physical floor of any per-run signed token: an ES256 signature per run, no Redis work.
    ceiling: async (job) => {
      jwt.sign(benchClaims(job), privateKey, { algorithm: 'ES256', header });
      return 1;
    },
    // The hand-written pattern jobscope replaces (notes/BASELINE.md): sign, SET PX, DEL in finally, auto-pipelined.
    naive: naiveNoop,
    // The same with an HS256 signature: what the pattern itself reaches against raw BullMQ (the HS256 target's floor).
    'naive-hs256': naiveNoop,
  };
  const processor = processors[variant];
  if (!processor) throw new Error(`unknown variant ${variant}`);
  const run = async (c: number, count: number) => {
    await preload(`raw${c}`, variant, count);
    const worker = new Worker(`raw${c}`, processor, {
      connection: { url: values.redis } as never,
      prefix: variant,
      concurrency: c,
      autorun: false,
    });
    const result = await measure(worker, count, () => void worker.run());
    await worker.close();
    return result;
  };
  await run(concurrencies.at(-1)!, WARMUP);
  for (const c of concurrencies) out[`c${c}`] = await run(c, counts(c));
  naive?.close();
  return out;
}

/** Starts bench/service.ts (one HTTP service in its own process); resolves with its URL. */
function startService(env: Record<string, string>): Promise<{ url: string; stop: () => void }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, path.join(import.meta.dirname, 'service.ts')], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
    });
    child.stdout.once('data', (d: Buffer) => resolve({ url: d.toString().trim(), stop: () => child.kill() }));
    child.once('exit', (code) => reject(new Error(`service exited ${code}`)));
  });
}

/**
 * Each run makes one HTTP call: raw BullMQ + got without auth; the naive scope around it, or jobscope, with the service
 * verifying the token.
 */
async function e2e(): Promise<Record<string, Measured>> {
  const c = Number(values.concurrency!.split(',').at(-1));
  if (variant === 'raw' || variant === 'naive') {
    // naive: the hand-written scope (ES256) around the call, its token sent as a bearer and verified by the service as
    // jobscope's are (@jobscope/verify: signature, claims, liveness of `naive:token:<jti>`).
    const naive = variant === 'naive' ? naiveScope(values.redis!, 'ES256', SECRET) : undefined;
    const service = await startService(
      naive
        ? { BENCH_AUTH: 'es256', BENCH_PUBLIC_KEY: naive.publicKeyPem(), BENCH_REDIS: values.redis!, BENCH_PREFIX: 'naive' }
        : { BENCH_AUTH: 'none' },
    );
    try {
      const client = got.extend({ prefixUrl: service.url, responseType: 'json', retry: { limit: 2 } });
      const call = naive
        ? async (job: Job) => {
            const { token, jti, live } = naive.begin(job);
            await live;
            try {
              return (await client.get('ping', { headers: { authorization: `Bearer ${token}` } })).body;
            } finally {
              await naive.end(jti);
            }
          }
        : async () => (await client.get('ping')).body;
      const run = async (count: number) => {
        await preload('e2e', variant, count);
        const worker = new Worker('e2e', call, {
          connection: { url: values.redis } as never,
          prefix: variant,
          concurrency: c,
          autorun: false,
        });
        const result = await measure(worker, count, () => void worker.run());
        await worker.close();
        return result;
      };
      await run(WARMUP);
      return { [`c${c}`]: await run(JOBS) };
    } finally {
      service.stop();
      naive?.close();
    }
  }
  const hs256 = variant === 'jobscope-hs256';
  // The runtime first (its key), then the service that verifies with it, then a runtime that knows the service's URL.
  const dir = jobsDir({
    [`noop${c}.ts`]: jobFiles([c], `async run(ctx) { return (await ctx.service('svc').get('ping')).body; }`)[`noop${c}.ts`],
  });
  let service: { url: string; stop: () => void } | undefined;
  try {
    const keys = await jobscopeRuntime(dir, hs256);
    const key = keys.keys.current;
    await keys.close();
    service = await startService(
      hs256
        ? { BENCH_AUTH: 'hs256', BENCH_SECRET: SECRET, BENCH_REDIS: values.redis! }
        : {
            BENCH_AUTH: 'es256',
            BENCH_PUBLIC_KEY: key.verifyKey.export({ format: 'pem', type: 'spki' }).toString(),
            BENCH_REDIS: values.redis!,
          },
    );
    const runtime = await jobscopeRuntime(dir, hs256, { JOBSCOPE_SERVICES: `svc=${service.url}` });
    const executor = await runtime.startWorkers([`noop${c}`]);
    const w = executor.takers.get(`noop${c}`)!;
    await w.pause();
    const run = async (count: number) => {
      await preload(`noop${c}`, 'bench', count);
      const r = await measure(w, count, () => w.resume());
      await w.pause();
      return r;
    };
    await run(WARMUP);
    const result = await run(JOBS);
    await runtime.close();
    return { [`c${c}`]: result };
  } finally {
    service?.stop();
    removeDir(dir);
  }
}

/** Trigger-to-handler-start: one run at a time on an idle worker (concurrency 10), `samples` times. */
async function latency(): Promise<Measured> {
  const samples: number[] = [];
  // The handler resolves the sample's waiter (no polling: the waiting must not take the worker's CPU).
  const waiters = new Map<number, (t: number) => void>();
  g.__benchStart = (i: number) => waiters.get(i)?.(performance.now());
  const starts = { set: (i: number, t: number) => waiters.get(i)?.(t) };
  const waitStart = (i: number) =>
    new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`sample ${i} did not start`)), 5000);
      waiters.set(i, (t) => {
        clearTimeout(timer);
        waiters.delete(i);
        resolve(t);
      });
    });
  const n = Number(values.samples);
  const warm = 20;
  if (variant === 'raw') {
    const queue = new Queue('lat', { connection: { url: values.redis } as never, prefix: 'raw' });
    const worker = new Worker('lat', async (job: Job<{ i: number }>) => void starts.set(job.data.i, performance.now()), {
      connection: { url: values.redis } as never,
      prefix: 'raw',
      concurrency: 10,
    });
    await worker.waitUntilReady();
    await sleep(200);
    for (let i = 0; i < n + warm; i++) {
      const started = waitStart(i);
      const t0 = performance.now();
      await queue.add('api', { i }, OPTS);
      const t1 = await started;
      if (i >= warm) samples.push(t1 - t0);
      await sleep(5);
    }
    await worker.close();
    await queue.close();
    return { samples };
  }
  const dir = jobsDir({
    'lat.ts': `export default { token: { audience: ['svc'] }, concurrency: 10, params: { type: 'object' }, async run(ctx) { globalThis.__benchStart(ctx.data.i); } };`,
  });
  try {
    const runtime = await jobscopeRuntime(dir, false);
    await runtime.startWorkers(['lat']);
    await sleep(200);
    for (let i = 0; i < n + warm; i++) {
      const started = waitStart(i);
      const t0 = performance.now();
      await runtime.control.trigger('lat', { i });
      const t1 = await started;
      if (i >= warm) samples.push(t1 - t0);
      await sleep(5);
    }
    await runtime.close();
    return { samples };
  } finally {
    removeDir(dir);
  }
}

/** Handler start minus due time of a 1 s schedule, on the embedded default Redis (as `jobscope start` runs it). */
async function drift(): Promise<Measured> {
  const port = await freePort();
  const embedded = await startEmbeddedRedis(mkdtempSync(path.join(os.tmpdir(), 'jobscope-bench-embedded-')), port);
  const samples: number[] = [];
  g.__benchDrift = (runId: string) => samples.push(Date.now() - fireTime({ id: runId.slice(runId.indexOf(':') + 1), timestamp: 0 }));
  const dir = jobsDir({
    'tick.ts': `export default { token: { audience: ['svc'] }, schedule: { every: '1s' }, async run(ctx) { globalThis.__benchDrift(ctx.run.id); } };`,
  });
  try {
    values.redis = embedded.url;
    const runtime = await jobscopeRuntime(dir, false);
    await runtime.syncSchedules();
    await runtime.startWorkers(['tick']);
    const n = Number(values.samples);
    const deadline = Date.now() + (n + 5) * 1000 + 5000;
    while (samples.length < n + 1 && Date.now() < deadline) await sleep(100);
    await runtime.close();
    // The first fire is the upsert's own (immediately): not a timed one.
    return { samples: samples.slice(1) };
  } finally {
    removeDir(dir);
    await embedded.stop();
  }
}

/** One process serving `files` job files, idle: connections, Redis commands per second, RSS, start-up time. */
async function idle(): Promise<Measured> {
  const files = Number(values.files);
  const dir = jobsDir(
    Object.fromEntries(
      Array.from({ length: files }, (_, i) => [
        `job${i}.ts`,
        `export default { token: { audience: ['svc'] }, async run() { return ${i}; } };`,
      ]),
    ),
  );
  try {
    const t0 = performance.now();
    const runtime = await jobscopeRuntime(dir, false);
    await runtime.startWorkers();
    const startupMs = performance.now() - t0;
    // Tells the orchestrator that start-up (CPU-heavy) is over: it may start other measurements meanwhile.
    console.log(JSON.stringify({ started: true, startupMs }));
    // Let start-up traffic settle, then count the commands this process sends over the window (MONITOR shows each one
    // as Redis runs it; commands a Lua script runs inside Redis are not counted: the script call is).
    await sleep(2000);
    const clients =
      String(await admin!.client('LIST'))
        .trim()
        .split('\n').length - 1;
    const byCommand: Record<string, number> = {};
    let sent = 0;
    const monitor = await monitorRedis(values.redis!, (args, source) => {
      if (source === 'lua') return;
      sent++;
      byCommand[args[0]] = (byCommand[args[0]] ?? 0) + 1;
    });
    const windowMs = Number(values.window) * 1000;
    await sleep(windowMs);
    monitor.close();
    const rssMb = process.memoryUsage().rss / 2 ** 20;
    await runtime.close();
    return { startupMs, connections: clients - 1, cmdsPerS: sent / (windowMs / 1000), byCommand, rssMb };
  } finally {
    removeDir(dir);
  }
}

let result: unknown;
try {
  if (admin) await admin.flushall();
  if (kind === 'throughput') result = await throughput();
  else if (kind === 'e2e') result = await e2e();
  else if (kind === 'latency') result = await latency();
  else if (kind === 'drift') result = await drift();
  else if (kind === 'idle') result = await idle();
  else throw new Error(`unknown kind ${kind}`);
} finally {
  admin?.disconnect();
}
console.log(JSON.stringify({ node: process.version, ...(result as object) }));
// Something (a got agent, a retired worker) may still hold the event loop: the measurement is done.
process.exit(0);
