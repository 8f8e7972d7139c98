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
    'newest-wins.ts': `export default { token: { audience: ['svc'] }, overlap: 'replace', concurrency: 1, ${body(600)} };`,
    'ticker.ts': `export default { token: { audience: ['svc'] }, overlap: 'skip', schedule: { every: '1s' }, ${body(2500)} };`,
  });
  ({ runtime } = await testRuntime({ redisUrl: redis.url, jobsDir: dir, env: { JOBSCOPE_PREFIX: 'ov' } }));
  await runtime.startWorkers(['only-one', 'latest', 'newest-wins']);
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
      assert.match(err.message, /overlap: 'skip' and a run is already waiting, delayed, active or waiting for a retry/);
      assert.equal((err as Error & { blocking?: string }).blocking, first.runId, 'the refusal names the run in the way');
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
    // Active comes a moment before its token is minted: wait for the token, then check there is no other.
    await until(async () => (await runtime.tokens.list()).length > 0, 5000, 'the newer run to hold its token');
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

  test('replace: an older run the newer trigger could not cancel does not run after the newer one has finished', async () => {
    // The burst race, made deterministic: run B is reserved, then a newer trigger C reserves and looks for B before B is
    // added (so its cancel finds nothing), then B is added. B waits behind C (concurrency 1) and starts after C completed.
    const older = 'older-run';
    assert.equal((await runtime.queues.overlap.claim('newest-wins', older, 'replace')).ok, true);
    const newer = await runtime.queues.enqueue('newest-wins', {});
    await runtime.queues.queue('newest-wins').add('api', {}, { jobId: older });
    assert.equal((await waitForRun(runtime, newer.runId)).state, 'completed');
    const report = await waitForRun(runtime, `newest-wins:${older}`);
    assert.equal(report.state, 'failed', JSON.stringify(report));
    assert.match(report.error!, new RegExp(`replaced by a newer run: ${newer.runId}`));
  });

  test('skip: a scheduled fire that came due while a run was active is recorded as skipped', async () => {
    const { runtime: scheduled } = await testRuntime({ redisUrl: redis.url, jobsDir: dir, env: { JOBSCOPE_PREFIX: 'ov' } });
    try {
      await scheduled.startWorkers(['ticker']);
      await scheduled.syncSchedules();
      const queue = scheduled.queues.queue('ticker');
      // Runs take 2.5 s and fires come every second: the fire due during a run must not run after it.
      await until(
        async () => (await queue.getCompletedCount()) >= 1 && (await queue.getFailedCount()) >= 1,
        12_000,
        'a finished ticker run and a skipped fire',
      );
      await scheduled.pause('ticker');
      const ran = (await queue.getCompleted(0, -1)).filter((j) => (j.returnvalue as { done?: string }).done);
      assert.ok(ran.length >= 1, 'a scheduled run ran');
      const skipped = await Promise.all((await queue.getFailed(0, -1)).map((j) => scheduled.queues.report(`ticker:${j.id}`)));
      assert.ok(skipped.length >= 1, 'a fire due during that run was skipped');
      for (const r of skipped) {
        // A skipped fire is its own outcome: not a success, not a plain failure, never retried.
        assert.equal(r.outcome, 'skipped');
        assert.equal(r.attempts, 1);
        assert.equal(r.error, 'skipped: another run of this job was active at its due time (overlap: skip)');
        assert.deepEqual(r.logs, ['skipped: another run of this job was active at its due time (overlap: skip)']);
      }
    } finally {
      await scheduled.close();
    }
  });
});
