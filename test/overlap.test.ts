// overlap: 'skip' and 'replace' (xxl-job's "discard later" and "cover early") against a real Redis.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Runtime } from '../src/runtime/runtime.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { jobsDir, removeDir, testRuntime } from './helpers/runtime.ts';
import { until, waitForRun } from './helpers/wait.ts';

// Runs until aborted or released through Redis-free means: a short fixed wait, honouring ctx.signal.
const body = (ms: number) => `async run(ctx) {
  await new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ${ms});
    ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); });
  });
  return { done: ctx.run.id };
}`;

let redis: TestRedis;
let dir: string;
let runtime: Runtime;

before(async () => {
  redis = await startRedis();
  dir = jobsDir({
    'only-one.ts': `export default { token: { audience: ['svc'] }, overlap: 'skip', ${body(800)} };`,
    'latest.ts': `export default { token: { audience: ['svc'] }, overlap: 'replace', ${body(5000)} };`,
    'ticker.ts': `export default { token: { audience: ['svc'] }, overlap: 'skip', schedule: { every: '1s' }, ${body(2500)} };`,
  });
  ({ runtime } = await testRuntime({ redisUrl: redis.url, jobsDir: dir, env: { JOBSCOPE_PREFIX: 'ov' } }));
  await runtime.startWorkers(['only-one', 'latest']);
});
after(async () => {
  await runtime.close();
  await redis.destroy();
  removeDir(dir);
});

async function activeRun(name: string): Promise<void> {
  await until(async () => (await runtime.queues.queue(name).getActiveCount()) === 1, 5000, `${name} to be active`);
}

describe('overlap', () => {
  test('skip: a trigger while a run is active is refused; after it finishes, triggers work again', async () => {
    const first = await runtime.queues.enqueue('only-one', {});
    await activeRun('only-one');
    await assert.rejects(runtime.queues.enqueue('only-one', {}), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_OVERLAP_SKIPPED');
      assert.match(err.message, /overlap: 'skip' and a run is already waiting or active/);
      return true;
    });
    assert.equal((await waitForRun(runtime, first.runId)).state, 'completed');
    const again = await runtime.queues.enqueue('only-one', {});
    assert.equal((await waitForRun(runtime, again.runId)).state, 'completed');
  });

  test('replace: a new trigger cancels the active run (its token revoked) and runs', async () => {
    const first = await runtime.queues.enqueue('latest', {});
    await activeRun('latest');
    const second = await runtime.queues.enqueue('latest', {});
    const old = await waitForRun(runtime, first.runId);
    assert.equal(old.state, 'failed');
    assert.match(old.error!, /run cancelled: replaced by a newer run/);
    await until(async () => (await runtime.queues.queue('latest').getActiveCount()) === 1, 5000, 'the newer run to start');
    const tokens = await runtime.tokens.list();
    assert.deepEqual(
      tokens.map((t) => t.run),
      [second.runId],
      'only the newer run holds a live token',
    );
    await runtime.cancel(second.runId, 'test over');
    assert.equal((await waitForRun(runtime, second.runId)).state, 'failed');
    assert.deepEqual(await runtime.tokens.list(), []);
  });

  test('skip: a scheduled fire that came due while a run was active is recorded as skipped', async () => {
    const { runtime: scheduled } = await testRuntime({ redisUrl: redis.url, jobsDir: dir, env: { JOBSCOPE_PREFIX: 'ov' } });
    try {
      await scheduled.startWorkers(['ticker']);
      await scheduled.syncSchedules();
      const queue = scheduled.queues.queue('ticker');
      // Runs take 2.5 s and fires come every second: the fire due during a run must not run after it.
      await until(async () => (await queue.getCompletedCount()) >= 2, 12_000, 'two finished ticker runs');
      await scheduled.pause('ticker');
      const done = await queue.getCompleted(0, -1);
      const skipped = done.filter((j) => (j.returnvalue as { skipped?: boolean }).skipped);
      const ran = done.filter((j) => (j.returnvalue as { done?: string }).done);
      assert.ok(ran.length >= 1, 'a scheduled run ran');
      assert.ok(skipped.length >= 1, 'a fire due during that run was skipped');
      assert.deepEqual(skipped[0].returnvalue, { skipped: true, reason: 'another run was active (overlap: skip)' });
      const logs = await queue.getJobLogs(skipped[0].id!);
      assert.deepEqual(logs.logs, ['skipped: another run of this job is active (overlap: skip)']);
    } finally {
      await scheduled.close();
    }
  });
});
