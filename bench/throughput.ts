// Throughput of jobscope (token minted, registered, scoped, revoked per run) against raw BullMQ, in the same run, on a
// private redis-server. Usage: npm run bench [-- --jobs 20000 --concurrency 50 --rounds 3]
// Prints a table and the median ratio jobscope / raw.
import { parseArgs } from 'node:util';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import jwt from 'jsonwebtoken';
import { Redis } from 'ioredis';
import { loadRegistry } from '../src/jobs/registry.ts';
import { createLogger } from '../src/log.ts';
import { Runtime } from '../src/runtime/runtime.ts';
import { loadConfig } from '../src/config.ts';
import { startRedis } from '../test/helpers/redis.ts';
import { jobsDir, removeDir } from '../test/helpers/runtime.ts';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '50' },
    rounds: { type: 'string', default: '3' },
    'time-limit': { type: 'string', default: '120' },
  },
});
const JOBS = Number(values.jobs);
const CONCURRENCY = Number(values.concurrency);
const ROUNDS = Number(values.rounds);
const LIMIT_MS = Number(values['time-limit']) * 1000;

const redis = await startRedis();
const admin = new Redis(redis.url);
const dir = jobsDir({
  'noop.ts': `export default { token: { audience: ['svc'], scope: ['x'] }, concurrency: ${CONCURRENCY}, async run() { return 1; } };`,
});

async function preload(queueName: string, prefix: string): Promise<void> {
  const queue = new Queue(queueName, { connection: { url: redis.url } as never, prefix });
  for (let i = 0; i < JOBS; i += 1000) {
    await queue.addBulk(
      Array.from({ length: Math.min(1000, JOBS - i) }, () => ({
        name: 'api',
        data: {},
        opts: { removeOnComplete: true, removeOnFail: true },
      })),
    );
  }
  await queue.close();
}

interface Result {
  /** Jobs per second. */
  rate: number;
  /** CPU time of this process (the worker's JS thread and libuv) per job, in microseconds: steadier than the rate. */
  cpuUs: number;
}

/** Resolves once `count` completions were seen (bounded by the time limit). */
function measure(worker: Worker): Promise<Result> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const started = performance.now();
    const cpu = process.cpuUsage();
    const timer = setTimeout(() => reject(new Error(`only ${done}/${JOBS} done in ${LIMIT_MS} ms`)), LIMIT_MS);
    worker.on('completed', () => {
      if (++done === JOBS) {
        clearTimeout(timer);
        const used = process.cpuUsage(cpu);
        resolve({ rate: JOBS / ((performance.now() - started) / 1000), cpuUs: (used.user + used.system) / JOBS });
      }
    });
    worker.on('failed', (_job, err) => reject(err));
  });
}

async function raw(): Promise<Result> {
  await admin.flushall();
  await preload('noop', 'raw');
  const worker = new Worker('noop', async () => 1, {
    connection: { url: redis.url } as never,
    prefix: 'raw',
    concurrency: CONCURRENCY,
    autorun: false,
  });
  const rate = measure(worker);
  void worker.run();
  const result = await rate;
  await worker.close();
  return result;
}

/** The naive scope from notes/BASELINE.md: jwt.sign (ES256, KeyObject) + SET PX + DEL in finally, auto-pipelined. */
async function naive(): Promise<Result> {
  await admin.flushall();
  await preload('noop', 'naive');
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const tokens = new Redis(redis.url, { enableAutoPipelining: true });
  const worker = new Worker(
    'noop',
    async (job) => {
      const jti = randomUUID();
      jwt.sign({ sub: 'job:noop', jti, run: job.id }, privateKey, { algorithm: 'ES256', expiresIn: 60 });
      await tokens.set(`naive:token:${jti}`, '1', 'PX', 60_000);
      try {
        return 1;
      } finally {
        await tokens.del(`naive:token:${jti}`);
      }
    },
    { connection: { url: redis.url } as never, prefix: 'naive', concurrency: CONCURRENCY, autorun: false },
  );
  const rate = measure(worker);
  void worker.run();
  const result = await rate;
  await worker.close();
  tokens.disconnect();
  return result;
}

async function jobscope(): Promise<Result> {
  await admin.flushall();
  await preload('noop', 'bench');
  const config = loadConfig({ REDIS_URL: redis.url, JOBSCOPE_PREFIX: 'bench', JOBSCOPE_STATE_DIR: '.jobscope/bench', LOG_LEVEL: 'silent' });
  const runtime = new Runtime(config, await loadRegistry(dir), createLogger('silent'));
  await runtime.ready();
  const workers = await runtime.startWorkers();
  const rate = measure(workers.workers.get('noop')!);
  const result = await rate;
  const leftover = await admin.keys('bench:token:*');
  await runtime.close();
  if (leftover.length) throw new Error(`${leftover.length} token keys left after the run`);
  return result;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows: { raw: Result; naive: Result; jobscope: Result }[] = [];
const fmt = (r: Result, base: Result) => `${Math.round(r.rate)}/s (${(r.rate / base.rate).toFixed(2)}x, ${Math.round(r.cpuUs)} us CPU/job)`;
try {
  for (let round = 1; round <= ROUNDS; round++) {
    const row = { raw: await raw(), naive: await naive(), jobscope: await jobscope() };
    rows.push(row);
    console.log(
      `round ${round}: raw BullMQ ${Math.round(row.raw.rate)}/s (${Math.round(row.raw.cpuUs)} us CPU/job), ` +
        `naive token scope ${fmt(row.naive, row.raw)}, jobscope ${fmt(row.jobscope, row.raw)}`,
    );
  }
  const med = (k: 'raw' | 'naive' | 'jobscope', f: (r: Result) => number) => median(rows.map((r) => f(r[k])));
  const ratio = (k: 'naive' | 'jobscope') => rows.map((r) => r[k].rate / r.raw.rate);
  console.log(
    `\n${JOBS} no-op jobs, concurrency ${CONCURRENCY}, ${ROUNDS} rounds (medians):\n` +
      `  raw BullMQ        ${Math.round(med('raw', (r) => r.rate))}/s, ${Math.round(med('raw', (r) => r.cpuUs))} us CPU/job\n` +
      `  naive token scope ${Math.round(med('naive', (r) => r.rate))}/s, ${Math.round(med('naive', (r) => r.cpuUs))} us CPU/job, ` +
      `ratio ${median(ratio('naive')).toFixed(2)}x\n` +
      `  jobscope          ${Math.round(med('jobscope', (r) => r.rate))}/s, ${Math.round(med('jobscope', (r) => r.cpuUs))} us CPU/job, ` +
      `ratio ${median(ratio('jobscope')).toFixed(2)}x (min ${Math.min(...ratio('jobscope')).toFixed(2)}x, max ${Math.max(...ratio('jobscope')).toFixed(2)}x)`,
  );
} finally {
  admin.disconnect();
  await redis.destroy();
  removeDir(dir);
}
