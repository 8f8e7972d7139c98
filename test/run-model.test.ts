// The read model takes a failed run's outcome from the field its worker recorded (RUN_FIELDS.outcome), never from its
// error: a handler's own error class named like one of jobscope's (RunTimeoutError) is a plain failure in the report, the
// run detail, the history rows and the history's outcome filter, while a real timeout is 'timeout' in all four. Real Redis.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Runtime } from '../src/runtime/runtime.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { jobsDir, removeDir, testRuntime } from './helpers/runtime.ts';
import { waitForRun } from './helpers/wait.ts';

let redis: TestRedis;
let dir: string;
let runtime: Runtime;

before(async () => {
  redis = await startRedis();
  dir = jobsDir({
    'impostor.ts': `class X extends Error { name = 'RunTimeoutError'; }
    export default {
      token: { audience: ['svc'] },
      async run() { throw new X('my own error, named like a timeout'); },
    };`,
    'hang.ts': `export default {
      token: { audience: ['svc'] },
      timeout: '100ms',
      async run(ctx) { await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))); },
    };`,
  });
  ({ runtime } = await testRuntime({ redisUrl: redis.url, jobsDir: dir, env: { JOBSCOPE_PREFIX: 'model' } }));
  await runtime.startWorkers();
});

after(async () => {
  await runtime?.close();
  await redis?.destroy();
  removeDir(dir);
});

describe('the outcome of a failed run', () => {
  test('comes from the recorded field, not from the name of the error', async () => {
    const { runId: impostor } = await runtime.control.trigger('impostor');
    const { runId: hang } = await runtime.control.trigger('hang');
    assert.equal((await waitForRun(runtime, impostor)).state, 'failed');
    assert.equal((await waitForRun(runtime, hang)).state, 'failed');

    const report = await runtime.control.report(impostor);
    assert.match(String(report.error), /my own error/);
    assert.equal(report.outcome, 'failed', 'a handler error named RunTimeoutError is a failure, not a timeout');
    assert.equal((await runtime.control.report(hang)).outcome, 'timeout');

    const detail = await runtime.control.runDetail(impostor);
    assert.equal(detail.outcome, 'failed');
    assert.deepEqual(
      detail.attemptList.map((a) => a.outcome),
      ['failed'],
    );

    const rows = new Map((await runtime.control.listRuns({})).runs.map((r) => [r.runId, r.outcome]));
    assert.equal(rows.get(impostor), 'failed');
    assert.equal(rows.get(hang), 'timeout');
    const timeouts = (await runtime.control.listRuns({ states: ['timeout'] })).runs.map((r) => r.runId);
    assert.deepEqual(timeouts, [hang], 'the index files the impostor under failed');
  });
});
