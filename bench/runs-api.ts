// How fast GET /api/runs answers over a big history: fills a private redis-server with `--jobs` job queues of `--runs`
// finished runs each (BullMQ bulk adds, finished by plain BullMQ workers: a mix of triggers, users and outcomes as
// jobscope records them), then times the query over real HTTP with and without filters and prints p50/p95.
// Usage: node --import tsx bench/runs-api.ts [--jobs 100] [--runs 1000] [--iterations 40]
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import express from 'express';
import { Redis } from 'ioredis';
import { Control } from '../src/control/control.ts';
import { registerDefinition } from '../src/jobs/define.ts';
import { Registry } from '../src/jobs/registry.ts';
import { apiRouter } from '../src/server/api.ts';
import { startRedis } from '../test/helpers/redis.ts';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '100' },
    runs: { type: 'string', default: '1000' },
    iterations: { type: 'string', default: '40' },
  },
});
const JOBS = Number(values.jobs);
const RUNS = Number(values.runs);
const ITERATIONS = Number(values.iterations);
const PREFIX = 'bench';

const redis = await startRedis();
const names = Array.from({ length: JOBS }, (_, i) => `job-${String(i).padStart(3, '0')}`);
const registry = new Registry(names.map((name) => registerDefinition(name, `${name}.ts`, { token: { audience: ['svc'] }, run: () => 1 })));

/** What each run is: 60% schedule, 30% API, 10% manual by one of three users; 5% fail, 1% of them time out. */
function runOf(i: number): { name: string; by?: string; fail?: string } {
  const kind = i % 10;
  const name = kind < 6 ? 'schedule' : kind < 9 ? 'api' : 'manual';
  const by = name === 'manual' ? ['user:ada', 'user:bob', 'user:kim'][i % 3] : name === 'api' ? 'client' : undefined;
  const fail = i % 100 === 7 ? 'RunTimeoutError' : i % 20 === 3 ? 'Error' : undefined;
  return { name, by, fail };
}

async function fill(): Promise<number> {
  const started = performance.now();
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  for (const name of names) {
    const queue = new Queue(name, { connection, prefix: PREFIX });
    for (let i = 0; i < RUNS; i += 1000) {
      await queue.addBulk(
        Array.from({ length: Math.min(1000, RUNS - i) }, (_, j) => {
          const r = runOf(i + j);
          return {
            name: r.name,
            data: { i: i + j, fail: r.fail ?? null },
            opts: {
              removeOnComplete: { count: 1000, age: 7 * 86400 },
              removeOnFail: { count: 5000, age: 30 * 86400 },
              ...({ jobscope: r.by ? { by: r.by } : {} } as object),
            },
          };
        }),
      );
    }
    await queue.close();
  }
  // Finish them: one worker per queue at a time, failing the runs marked to fail with the error jobscope records.
  for (const name of names) {
    let done = 0;
    await new Promise<void>((resolve, reject) => {
      const worker = new Worker(
        name,
        async (job) => {
          const fail = (job.data as { fail: string | null }).fail;
          if (fail) {
            const err = new UnrecoverableError(fail === 'RunTimeoutError' ? 'the run timed out after 30000 ms' : 'downstream said 503');
            err.name = fail;
            err.stack = `${fail}: ${err.message}\n    at bench`;
            throw err;
          }
          return 1;
        },
        { connection, prefix: PREFIX, concurrency: 100 },
      );
      const tick = () => {
        if (++done === RUNS) void worker.close().then(() => resolve(), reject);
      };
      worker.on('completed', tick);
      worker.on('failed', tick);
      worker.on('error', reject);
    });
  }
  connection.disconnect();
  return performance.now() - started;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const fillMs = await fill();
const control = new Control({ redisUrl: redis.url, prefix: PREFIX, registry });
await control.ready();
const app = express();
app.use('/api', apiRouter(control, '100kb'));
const server = app.listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/runs`;

async function get(query: string): Promise<{ ms: number; body: { runs: unknown[]; next: string | null } }> {
  const t = performance.now();
  const res = await fetch(base + query);
  const body = (await res.json()) as { runs: unknown[]; next: string | null };
  if (res.status !== 200) throw new Error(`${query}: ${res.status} ${JSON.stringify(body)}`);
  return { ms: performance.now() - t, body };
}

// The first query builds the index from scratch (a fresh deployment over an existing history).
const first = await get('?trigger=manual');
const dbsize = await control.redis.dbsize();
const counts = await control.redis.eval(`return #redis.call('KEYS', ARGV[1])`, 0, `${PREFIX}:_idx:*`);

let page10 = '';
{
  let cursor: string | null = null;
  for (let i = 0; i < 9; i++) cursor = (await get(`?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)).body.next;
  page10 = `?limit=50&cursor=${encodeURIComponent(cursor ?? '')}`;
}
const kept = await control.redis.zrangebyscore(`${PREFIX}:${names[0]}:completed`, '-inf', '+inf', 'WITHSCORES');
const mid = Number(kept[Math.floor(kept.length / 4) * 2 + 1]);
const variants: [string, string][] = [
  ['all runs, first page (50)', '?limit=50'],
  ['all runs, 10th page (cursor)', page10],
  [`job=${names[Math.floor(JOBS / 2)]}`, `?job=${names[Math.floor(JOBS / 2)]}`],
  ['state=failed', '?state=failed'],
  ['state=timeout (1%)', '?state=timeout'],
  ['state=completed', '?state=completed'],
  ['trigger=manual', '?trigger=manual'],
  ['by=user:ada', '?by=user:ada'],
  ['by=user:nobody (no match)', '?by=user:nobody'],
  ['from/to (a 1 s window)', `?from=${mid - 500}&to=${mid + 500}`],
  ['job + state + trigger', `?job=${names[JOBS - 1]}&state=failed&trigger=schedule`],
];
const rows: string[] = [];
for (const [label, query] of variants) {
  for (let i = 0; i < 3; i++) await get(query);
  const times: number[] = [];
  let found = 0;
  for (let i = 0; i < ITERATIONS; i++) {
    const { ms, body } = await get(query);
    times.push(ms);
    found = body.runs.length;
  }
  times.sort((a, b) => a - b);
  rows.push(
    `| ${label.padEnd(30)} | ${String(found).padStart(4)} | ${pct(times, 50).toFixed(1).padStart(6)} | ${pct(times, 95).toFixed(1).padStart(6)} |`,
  );
}

console.log(`${JOBS} jobs x ${RUNS} runs (${(JOBS * RUNS).toLocaleString('en')} kept runs), filled in ${(fillMs / 1000).toFixed(1)} s`);
console.log(`first query (builds the index from scratch): ${first.ms.toFixed(0)} ms; Redis keys: ${dbsize} (${String(counts)} index keys)`);
console.log(
  `\n| query                          | rows |  p50 ms |  p95 ms |\n| ------------------------------ | ---- | ------- | ------- |`,
);
for (const r of rows) console.log(r);

server.close();
await control.close();
await redis.destroy();
