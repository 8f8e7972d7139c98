// Retention against a real Redis and real workers: 20,000 runs (BullMQ bulk adds, a worker at concurrency 50) leave a
// bounded number of Redis keys. The environment's defaults (JOBSCOPE_KEEP_COMPLETED/_FAILED/_LOGS) and a job's own `keep`
// decide how many runs stay; every per-run key (the run's hash and logs, its claims history, attempt rows and log times,
// which live in that hash) goes with its run; the run index holds only kept runs; no `<prefix>:claims:*` key is left.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jobOptions } from '../src/control/queues.ts';
import { parseKeep } from '../src/config.ts';
import type { Runtime } from '../src/runtime/runtime.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { jobsDir, removeDir, testRuntime } from './helpers/runtime.ts';
import { until } from './helpers/wait.ts';

const RUNS = 20_000;
let redis: TestRedis;
let dir: string;
let runtime: Runtime;

before(async () => {
  redis = await startRedis();
  dir = jobsDir({
    // One log line per run; every 20th run fails (and is kept by the failed rule).
    'noop.ts': `export default {
      token: { audience: ['svc'] },
      concurrency: 50,
      async run(ctx) {
        await ctx.log('run ' + ctx.data.i);
        if (ctx.data.i % 20 === 0) throw new Error('every 20th run fails');
        return 1;
      },
    };`,
    'own.ts': `export default {
      token: { audience: ['svc'] },
      concurrency: 50,
      keep: { completed: { count: 30 } },
      async run(ctx) { for (let i = 0; i < 8; i++) await ctx.log('line ' + i); return 1; },
    };`,
  });
  ({ runtime } = await testRuntime({
    redisUrl: redis.url,
    jobsDir: dir,
    env: {
      JOBSCOPE_PREFIX: 'ret',
      // Info level: 20,000 runs at trace level would spend the test's time on log lines.
      LOG_LEVEL: 'warn',
      JOBSCOPE_KEEP_COMPLETED: '200,7d',
      JOBSCOPE_KEEP_FAILED: '50',
      JOBSCOPE_KEEP_LOGS: '5',
    },
  }));
  await runtime.startWorkers();
});

after(async () => {
  await runtime?.close();
  await redis?.destroy();
  removeDir(dir);
});

/** Adds `count` runs of `job` in bulk, with the options the control plane gives its runs, and waits for them to finish. */
async function runMany(job: string, count: number, from = 0): Promise<void> {
  let ended = 0;
  const onEnd = ({ job: j }: { job: string }) => void (j === job && ended++);
  runtime.executor!.on('run:end', onEnd);
  try {
    const queue = runtime.queues.queue(job);
    const opts = jobOptions(runtime.registry.get(job));
    for (let i = 0; i < count; i += 1000) {
      await queue.addBulk(Array.from({ length: Math.min(1000, count - i) }, (_, j) => ({ name: 'api', data: { i: from + i + j }, opts })));
    }
    await until(() => ended >= count, 150_000, `${count} runs of ${job}`);
    // The last runs' completions are written right after their end events.
    await until(async () => (await queue.getJobCounts('active', 'waiting')).active === 0, 5000, 'the last runs to be recorded');
  } finally {
    runtime.executor!.off('run:end', onEnd);
  }
}

async function keyCounts(): Promise<{ total: number; byKind: Record<string, number> }> {
  const keys = await runtime.redis.keys('*');
  const byKind: Record<string, number> = {};
  for (const key of keys) {
    const kind = /^ret:(token|claims|_idx):/.test(key)
      ? key.split(':')[1]
      : /^ret:(noop|own):[^:]+:logs$/.test(key)
        ? 'run logs'
        : /^ret:(noop|own):\d+$/.test(key)
          ? 'run hashes'
          : 'other (queues, schedulers, registry, heartbeats)';
    byKind[kind] = (byKind[kind] ?? 0) + 1;
  }
  return { total: keys.length, byKind };
}

describe('retention', () => {
  test('JOBSCOPE_KEEP_* parse as count,age', () => {
    assert.deepEqual(parseKeep('X', '1000,7d', {}), { count: 1000, age: 604800 });
    assert.deepEqual(parseKeep('X', '12h', {}), { age: 43200 });
    assert.deepEqual(parseKeep('X', '500', {}), { count: 500 });
    assert.deepEqual(parseKeep('X', undefined, { count: 1 }), { count: 1 });
    for (const bad of ['lots', '10,20', '1d,2d', '0.5s']) {
      assert.throws(() => parseKeep('X', bad, {}), /X: .* is not count,age/, bad);
    }
    const noop = jobOptions(runtime.registry.get('noop'));
    assert.deepEqual([noop.removeOnComplete, noop.removeOnFail, noop.keepLogs], [{ age: 604800, count: 200 }, { count: 50 }, 5]);
    assert.deepEqual(jobOptions(runtime.registry.get('own')).removeOnComplete, { count: 30 }, "the job's own keep replaces the default");
  });

  test(`${RUNS.toLocaleString('en')} runs leave a bounded number of Redis keys; every per-run key goes with its run`, async (t) => {
    const started = Date.now();
    await runMany('noop', 1000);
    await runMany('own', 100);
    await runtime.control.listRuns({ triggers: ['api'] }); // the run index learns them
    const early = await keyCounts();
    const memEarly = Number(/used_memory:(\d+)/.exec(await runtime.redis.info('memory'))![1]);

    await runMany('noop', RUNS - 1000, 1000);
    await runMany('own', 400);
    const page = await runtime.control.listRuns({ triggers: ['api'], limit: 200 });
    const late = await keyCounts();
    const memLate = Number(/used_memory:(\d+)/.exec(await runtime.redis.info('memory'))![1]);
    t.diagnostic(`${RUNS + 500} runs in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    t.diagnostic(`keys after 1,100 runs: ${early.total} ${JSON.stringify(early.byKind)}; used_memory ${(memEarly / 1e6).toFixed(1)} MB`);
    t.diagnostic(
      `keys after ${RUNS + 500} runs: ${late.total} ${JSON.stringify(late.byKind)}; used_memory ${(memLate / 1e6).toFixed(1)} MB`,
    );

    const counts = await runtime.queues.queue('noop').getJobCounts('completed', 'failed');
    assert.deepEqual(counts, { completed: 200, failed: 50 }, 'JOBSCOPE_KEEP_COMPLETED=200,7d and JOBSCOPE_KEEP_FAILED=50');
    assert.equal((await runtime.queues.queue('own').getJobCounts('completed')).completed, 30, "the job's own keep");
    // Per run: its hash and its log list, for kept runs only; no claims key, no live token after the runs.
    assert.equal(late.byKind['run hashes'], 200 + 50 + 30);
    assert.equal(late.byKind['run logs'], 200 + 50 + 30);
    assert.equal(late.byKind.claims ?? 0, 0, 'no <prefix>:claims:<runId> key');
    assert.equal(late.byKind.token ?? 0, 0, 'no live token');
    // The run index: a fixed number of keys per job (a few attribute values), whatever the number of runs.
    assert.ok((late.byKind._idx ?? 0) <= 12, `index keys: ${late.byKind._idx}`);
    assert.ok(late.total <= early.total + 5, `keys grew from ${early.total} to ${late.total}`);
    assert.ok(memLate < memEarly * 1.5, `memory grew from ${memEarly} to ${memLate}`);
    for (const key of await runtime.redis.keys('ret:_idx:*:*:*:*')) {
      assert.ok((await runtime.redis.zcard(key)) <= 200, `${key} holds only kept runs`);
    }
    assert.equal(page.runs.length, 200);
    for (const r of page.runs) assert.equal(await runtime.redis.exists(`ret:${r.runId}`), 1, `${r.runId} is listed but gone`);

    // A kept run carries its claims history, its log lines (5 kept) and their times, all in its own hash and log list.
    const [kept] = await runtime.queues.queue('own').getJobs(['completed'], 0, 0);
    const detail = await runtime.control.runDetail(`own:${kept.id}`);
    assert.equal(detail.claims.length, 1);
    assert.deepEqual(
      detail.logLines.map((l) => l.line),
      ['line 3', 'line 4', 'line 5', 'line 6', 'line 7'],
    );
    assert.ok(detail.logLines.every((l) => l.time && l.attempt === 1));
  });
});
