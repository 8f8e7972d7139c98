// What users would pick instead, on PostgreSQL: graphile-worker and pg-boss doing the same no-op work at concurrency 50,
// each with its documented high-throughput settings, and their trigger-to-handler-start latency on an idle worker.
//   node --import tsx bench/peers.ts peers <graphile-worker|pg-boss> --pg <url> [--jobs N] [--samples N]
// Each run gets a fresh database schema. Prints one JSON line: { c50: { rate, cpuUs, samples } }.
import { parseArgs } from 'node:util';
import pg from 'pg';
import { sleep, type Measured } from './lib.ts';

const [, peer] = process.argv.slice(2, 4);
const { values } = parseArgs({
  args: process.argv.slice(4),
  options: {
    pg: { type: 'string' },
    jobs: { type: 'string', default: '20000' },
    warmup: { type: 'string', default: '3000' },
    samples: { type: 'string', default: '200' },
    redis: { type: 'string' },
  },
});
const JOBS = Number(values.jobs);
const SAMPLES = Number(values.samples);
const WARMUP = Number(values.warmup);
const DB = 'jobscope_bench';
const C = 50;

/** A database of our own on the given server (created once), its schemas dropped so every run starts empty. */
async function freshDatabase(): Promise<string> {
  const admin = new pg.Client({ connectionString: values.pg });
  await admin.connect();
  const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DB]);
  if (!exists.rowCount) await admin.query(`CREATE DATABASE ${DB}`);
  await admin.end();
  const url = new URL(values.pg!);
  url.pathname = `/${DB}`;
  const db = new pg.Client({ connectionString: url.toString() });
  await db.connect();
  await db.query('DROP SCHEMA IF EXISTS graphile_worker CASCADE; DROP SCHEMA IF EXISTS pgboss CASCADE');
  await db.end();
  return url.toString();
}

/**
 * Resolves with rate and CPU once `count` handlers ran AND the database shows the jobs finished (`remaining` = 0): a
 * completion counts when it is recorded, as BullMQ's 'completed' event does.
 */
function counter(count: number, remaining: () => Promise<number>) {
  let done = 0;
  let t0 = 0;
  let cpu: NodeJS.CpuUsage;
  let resolve!: (m: Measured) => void;
  const finished = new Promise<Measured>((r) => (resolve = r));
  return {
    start() {
      cpu = process.cpuUsage();
      t0 = performance.now();
    },
    add(n = 1) {
      done += n;
      if (done === count) {
        void (async () => {
          while ((await remaining()) > 0) await sleep(5);
          const used = process.cpuUsage(cpu);
          resolve({ rate: count / ((performance.now() - t0) / 1000), cpuUs: (used.user + used.system) / count });
        })();
      }
    },
    finished,
  };
}

/** A query that answers how many jobs are not finished yet. */
async function remainingQuery(url: string, sql: string): Promise<{ remaining: () => Promise<number>; end: () => Promise<void> }> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  return { remaining: async () => Number((await db.query(sql)).rows[0].n), end: () => db.end() };
}

async function graphile(url: string): Promise<Measured> {
  const { run, makeWorkerUtils } = await import('graphile-worker');
  const utils = await makeWorkerUtils({ connectionString: url });
  await utils.migrate();
  const add = async (n: number) => {
    for (let i = 0; i < n; i += 1000)
      await utils.addJobs(Array.from({ length: Math.min(1000, n - i) }, () => ({ identifier: 'noop', payload: {} })));
  };
  const starts = new Map<number, number>();
  const q = await remainingQuery(
    url,
    "SELECT count(*) AS n FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id WHERE t.identifier = 'noop'",
  );
  let count = counter(JOBS, q.remaining);
  // The settings of graphile-worker's performance page: local queue, batched completion.
  const preset = {
    worker: {
      connectionString: url,
      concurrentJobs: C,
      maxPoolSize: C + 2,
      localQueue: { size: 500 },
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
    },
  };
  const startRunner = () =>
    run({
      preset,
      noHandleSignals: true,
      logger: new (class {
        scope() {
          return this;
        }
        error() {}
        warn() {}
        info() {}
        debug() {}
      })() as never,
      taskList: {
        noop: async () => {
          count.add();
        },
        lat: async (payload) => {
          starts.set((payload as { i: number }).i, performance.now());
        },
      },
    });
  // Warm-up, then the measured pass: jobs queued first, then the runner takes them.
  count = counter(WARMUP, q.remaining);
  await add(WARMUP);
  let runner = await startRunner();
  count.start();
  await count.finished;
  await runner.stop();
  count = counter(JOBS, q.remaining);
  await add(JOBS);
  runner = await startRunner();
  count.start();
  const measured = await count.finished;
  // Latency on the idle runner.
  await sleep(500);
  const samples: number[] = [];
  for (let i = 0; i < SAMPLES + 20; i++) {
    const t0 = performance.now();
    await utils.addJob('lat', { i });
    const deadline = Date.now() + 5000;
    while (!starts.has(i) && Date.now() < deadline) await sleep(0.2);
    if (i >= 20) samples.push(starts.get(i)! - t0);
    await sleep(5);
  }
  await runner.stop();
  await utils.release();
  await q.end();
  return { ...measured, samples };
}

async function pgBoss(url: string): Promise<Measured> {
  const { PgBoss } = await import('pg-boss');
  const boss = new PgBoss({ connectionString: url, useListenNotify: true } as ConstructorParameters<typeof PgBoss>[0]);
  boss.on('error', () => {});
  await boss.start();
  for (const q of ['noop', 'lat']) await boss.createQueue(q, { notify: true } as never);
  const add = async (n: number) => {
    for (let i = 0; i < n; i += 1000)
      await boss.insert(
        'noop',
        Array.from({ length: Math.min(1000, n - i) }, () => ({ data: {} })),
      );
  };
  const q = await remainingQuery(
    url,
    "SELECT count(*) AS n FROM pgboss.job WHERE name = 'noop' AND state IN ('created', 'retry', 'active')",
  );
  let count = counter(WARMUP, q.remaining);
  // Batch mode: one fetch and one completion per batch of 50, fetching again at once while batches come back full.
  const work = () =>
    boss.work('noop', { batchSize: C, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5 }, async (jobs) => {
      count.add(jobs.length);
    });
  await add(WARMUP);
  let id = await work();
  count.start();
  await count.finished;
  await boss.offWork('noop', { id } as never);
  count = counter(JOBS, q.remaining);
  await add(JOBS);
  id = await work();
  count.start();
  const measured = await count.finished;
  await boss.offWork('noop', { id } as never);
  const starts = new Map<number, number>();
  await boss.work('lat', { batchSize: 1, pollingIntervalSeconds: 0.5 }, async (jobs) => {
    for (const j of jobs) starts.set((j.data as { i: number }).i, performance.now());
  });
  await sleep(1000);
  const samples: number[] = [];
  for (let i = 0; i < SAMPLES + 20; i++) {
    const t0 = performance.now();
    await boss.send('lat', { i });
    const deadline = Date.now() + 5000;
    while (!starts.has(i) && Date.now() < deadline) await sleep(0.2);
    if (i >= 20 && starts.has(i)) samples.push(starts.get(i)! - t0);
    await sleep(5);
  }
  await boss.stop({ graceful: false, wait: false } as never);
  await q.end();
  return { ...measured, samples };
}

const url = await freshDatabase();
const result = peer === 'graphile-worker' ? await graphile(url) : await pgBoss(url);
console.log(JSON.stringify({ node: process.version, c50: result }));
process.exit(0);
