// How fast GET /api/runs answers over a big history: fills a private redis-server with `--jobs` job queues of `--runs`
// finished runs each (BullMQ bulk adds, finished by plain BullMQ workers: a mix of triggers, users and outcomes as
// jobscope records them), then times the query over real HTTP with and without filters and prints p50/p95.
// Also times GET /api/overview (the dashboard's first page) over the same history.
// Usage: node --import tsx bench/runs-api.ts [--jobs 100] [--runs 1000] [--iterations 40] [--fill workers|script] [--overview-only]
// `--fill script` writes the finished runs with a Lua script in BullMQ's own layout (the hash fields and finished sets
// BullMQ's workers leave, finish times spread over the last 7 days) instead of running them through BullMQ workers:
// 1,000 jobs x 1,000 runs in a minute or two instead of most of an hour.
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
    fill: { type: 'string', default: 'workers' },
    'overview-only': { type: 'boolean', default: false },
  },
});
const JOBS = Number(values.jobs);
const RUNS = Number(values.runs);
const ITERATIONS = Number(values.iterations);
if (values.fill !== 'workers' && values.fill !== 'script') throw new Error('--fill: workers or script');
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

// One job's finished runs as BullMQ's workers leave them: the run hash (name, data, opts, timestamps, attempts, result or
// failedReason and stacktrace) and its id in the job's completed or failed set (score: finishedOn). Run i (0-based)
// finishes at ARGV[2] + i * ARGV[3]; what each run is follows runOf(). KEYS: [1] the queue's key prefix.
const FILL = `local prefix, runs, start, step = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local users = { 'user:ada', 'user:bob', 'user:kim' }
for i = 0, runs - 1 do
  local kind = i % 10
  local name = kind < 6 and 'schedule' or (kind < 9 and 'api' or 'manual')
  local by = name == 'manual' and users[i % 3 + 1] or (name == 'api' and 'client' or nil)
  local fail = (i % 100 == 7) and 'RunTimeoutError' or ((i % 20 == 3) and 'Error' or nil)
  local id = tostring(i + 1)
  local finished = start + i * step
  local opts = '{"attempts":1,"removeOnComplete":{"count":1000},"removeOnFail":{"count":5000},"jobscope":'
    .. (by and ('{"by":"' .. by .. '"}') or '{}') .. '}'
  local key = prefix .. id
  redis.call('HSET', key, 'name', name, 'data', '{"i":' .. i .. '}', 'opts', opts, 'timestamp', finished - 40,
    'delay', 0, 'priority', 0, 'processedOn', finished - 20, 'finishedOn', finished, 'atm', 1, 'ats', 1)
  if fail then
    local message = fail == 'RunTimeoutError' and 'the run timed out after 30000 ms' or 'downstream said 503'
    redis.call('HSET', key, 'failedReason', message, 'stacktrace', cjson.encode({ fail .. ': ' .. message .. '\\n    at bench' }))
    redis.call('ZADD', prefix .. 'failed', finished, id)
  else
    redis.call('HSET', key, 'returnvalue', '1')
    redis.call('ZADD', prefix .. 'completed', finished, id)
  end
end
redis.call('SET', prefix .. 'id', runs)
return runs`;

async function fillByScript(): Promise<number> {
  const started = performance.now();
  const connection = new Redis(redis.url);
  const span = 7 * 86_400_000;
  const step = Math.floor(span / RUNS);
  for (const name of names) await connection.eval(FILL, 1, `${PREFIX}:${name}:`, RUNS, Date.now() - span, step);
  connection.disconnect();
  return performance.now() - started;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const fillMs = values.fill === 'script' ? await fillByScript() : await fill();
const control = new Control({ redisUrl: redis.url, prefix: PREFIX, registry });
await control.ready();
const app = express();
app.use('/api', apiRouter(control, '100kb'));
const server = app.listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const api = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`;
const base = `${api}/runs`;

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
for (const [label, query] of values['overview-only'] ? [] : variants) {
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

// GET /api/overview: after the first query above brought the index up to date, as the dashboard's first page asks it.
const syncTimes: number[] = [];
for (let i = 0; i < ITERATIONS; i++) {
  const t = performance.now();
  await control.runIndex.sync();
  syncTimes.push(performance.now() - t);
}
syncTimes.sort((a, b) => a - b);
const overviewTimes: number[] = [];
let overviewFirstMs = 0;
// Redis's own time per overview (commandstats, summed over every command): what the overview costs the one Redis every
// host shares, whatever else the bench machine is doing.
let redisUsec = 0;
const usecNow = async () => [...(await control.redis.info('commandstats')).matchAll(/usec=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
let overview: { last24h: { finished: number }; last7d: { finished: number; timeout: number }; failing: unknown[] } | undefined;
for (let i = 0; i < ITERATIONS + 3; i++) {
  const t = performance.now();
  const res = await fetch(`${api}/overview`);
  const body = (await res.json()) as typeof overview;
  if (res.status !== 200) throw new Error(`overview: ${res.status} ${JSON.stringify(body)}`);
  if (i === 0) overviewFirstMs = performance.now() - t;
  if (i >= 3) overviewTimes.push(performance.now() - t);
  if (i === 2) redisUsec = -(await usecNow());
  overview = body;
}
redisUsec += await usecNow();
overviewTimes.sort((a, b) => a - b);
rows.push(
  `| ${'GET /api/overview'.padEnd(30)} | ${String(overview?.failing.length ?? 0).padStart(4)} | ${pct(overviewTimes, 50).toFixed(1).padStart(6)} | ${pct(overviewTimes, 95).toFixed(1).padStart(6)} |`,
);
console.log(`${JOBS} jobs x ${RUNS} runs (${(JOBS * RUNS).toLocaleString('en')} kept runs), filled in ${(fillMs / 1000).toFixed(1)} s`);
console.log(`first query (builds the index from scratch): ${first.ms.toFixed(0)} ms; Redis keys: ${dbsize} (${String(counts)} index keys)`);
console.log(
  `\n| query                          | rows |  p50 ms |  p95 ms |\n| ------------------------------ | ---- | ------- | ------- |`,
);
for (const r of rows) console.log(r);
console.log(
  `\nindex sync when nothing changed (every query above pays it): p50 ${pct(syncTimes, 50).toFixed(1)} ms, p95 ${pct(syncTimes, 95).toFixed(1)} ms;` +
    ` first overview (counts all ${48} hours): ${overviewFirstMs.toFixed(0)} ms; Redis time per overview: ` +
    `${(redisUsec / ITERATIONS / 1000).toFixed(1)} ms (background recounts and index syncs included)`,
);
console.log(
  `overview: ${overview?.last24h.finished} runs finished in 24 h, ${overview?.last7d.finished} in 7 days (${overview?.last7d.timeout} timed out), ` +
    `${overview?.failing.length} jobs failing now (the overview row's "rows")`,
);

server.close();
await control.close();
await redis.destroy();
