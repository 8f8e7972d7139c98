// Throughput of jobscope (token minted, registered, scoped, revoked per run) against raw BullMQ, in the same run, on a
// private redis-server. Usage: npm run bench [-- --jobs 20000 --concurrency 50 --rounds 3]
// Prints a table and the median ratio jobscope / raw.
import { parseArgs } from 'node:util';
import { Queue, Worker } from 'bullmq';
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

/** Resolves with jobs/s once `count` completions were seen (bounded by the time limit). */
function measure(worker: Worker): Promise<number> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const started = performance.now();
    const timer = setTimeout(() => reject(new Error(`only ${done}/${JOBS} done in ${LIMIT_MS} ms`)), LIMIT_MS);
    worker.on('completed', () => {
      if (++done === JOBS) {
        clearTimeout(timer);
        resolve(JOBS / ((performance.now() - started) / 1000));
      }
    });
    worker.on('failed', (_job, err) => reject(err));
  });
}

async function raw(): Promise<number> {
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

async function jobscope(): Promise<number> {
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
const rows: { round: number; raw: number; jobscope: number }[] = [];
try {
  for (let round = 1; round <= ROUNDS; round++) {
    const r = await raw();
    const j = await jobscope();
    rows.push({ round, raw: Math.round(r), jobscope: Math.round(j) });
    console.log(`round ${round}: raw BullMQ ${Math.round(r)}/s, jobscope ${Math.round(j)}/s, ratio ${(j / r).toFixed(2)}x`);
  }
  const ratios = rows.map((r) => r.jobscope / r.raw);
  console.log(
    `\n${JOBS} no-op jobs, concurrency ${CONCURRENCY}, ${ROUNDS} rounds: raw median ${median(rows.map((r) => r.raw))}/s, ` +
      `jobscope median ${median(rows.map((r) => r.jobscope))}/s, ratio median ${median(ratios).toFixed(2)}x ` +
      `(min ${Math.min(...ratios).toFixed(2)}x, max ${Math.max(...ratios).toFixed(2)}x)`,
  );
} finally {
  admin.disconnect();
  await redis.destroy();
  removeDir(dir);
}
