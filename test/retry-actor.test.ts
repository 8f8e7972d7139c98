// A retry records who retried it: a run triggered by one user and retried by another through the API runs its new attempt
// with `triggeredBy` and the token's `act` claim naming the retrier (the run's first trigger is kept). Real Redis, a real
// runtime and server on 127.0.0.1; the claims are read from the token the attempt held (its own `ctx.token.claims`) and
// from the run's claims history, and the token is checked by the verifier as a service would.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Runtime } from '../src/runtime/runtime.ts';
import { addUser } from '../src/server/users.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { jobsDir, removeDir, testRuntime } from './helpers/runtime.ts';
import { ADMIN, TestServer } from './helpers/server.ts';
import { until, waitForRun } from './helpers/wait.ts';

const BOB = { user: 'bob', password: 'bob-operator-password' };

let redis: TestRedis;
let dir: string;
let state: string;
let runtime: Runtime;
let srv: TestServer;

before(async () => {
  redis = await startRedis();
  // Fails its first attempt; every attempt returns who it ran for, as its run and its token say.
  dir = jobsDir({
    'flaky.ts': `export default { token: { audience: ['svc'] }, attempts: 1,
      async run(ctx) {
        if (ctx.run.attempt === 1) throw new Error('first attempt fails');
        return { triggeredBy: ctx.run.triggeredBy, trigger: ctx.run.trigger, act: ctx.token.claims.act ?? null, att: ctx.token.claims.att };
      } };`,
  });
  state = mkdtempSync(path.join(os.tmpdir(), 'jobscope-retry-'));
  const usersFile = path.join(state, 'users.json');
  await addUser(usersFile, { name: BOB.user, role: 'operator', password: BOB.password });
  ({ runtime } = await testRuntime({ redisUrl: redis.url, jobsDir: dir, env: { JOBSCOPE_PREFIX: 'ra' } }));
  await runtime.startWorkers();
  srv = await TestServer.start(runtime, { usersFile });
});
after(async () => {
  await srv?.close();
  await runtime?.close();
  await redis?.destroy();
  if (dir) removeDir(dir);
  if (state) rmSync(state, { recursive: true, force: true });
});

describe('retry', () => {
  test("the retried attempt's triggeredBy and token act name who pressed Retry", async () => {
    const posted = await srv.request('/api/jobs/flaky/runs', { method: 'POST', auth: ADMIN, json: {} });
    assert.equal(posted.status, 202, posted.text);
    const { runId } = posted.body;
    assert.equal((await waitForRun(runtime, runId)).state, 'failed');
    const first = (await srv.request(`/api/runs/${runId}`, { auth: ADMIN })).body;
    assert.deepEqual(
      first.claims.map((c: { att: number; act: unknown }) => [c.att, c.act]),
      [[1, { sub: 'user:admin' }]],
    );

    const retried = await srv.request(`/api/runs/${runId}/retry`, { method: 'POST', auth: BOB });
    assert.equal(retried.status, 200, retried.text);
    await until(async () => (await runtime.queues.report(runId)).state === 'completed', 15_000, 'the retried run');

    const report = await runtime.queues.report(runId);
    // What the attempt itself saw: its run and the claims of the token it held.
    assert.deepEqual(report.result, { triggeredBy: 'user:bob', trigger: 'retry', act: { sub: 'user:bob' }, att: 2 });
    assert.equal(report.triggeredBy, 'user:admin', 'the run keeps who first triggered it');
    assert.equal(report.retriedBy, 'user:bob');

    // The run's claims history: attempt 1 acted for admin, attempt 2 for bob.
    const view = (await srv.request(`/api/runs/${runId}`, { auth: ADMIN })).body;
    assert.deepEqual(
      view.claims.map((c: { att: number; act: unknown }) => [c.att, c.act]),
      [
        [1, { sub: 'user:admin' }],
        [2, { sub: 'user:bob' }],
      ],
    );
    assert.ok(view.logs.includes('retried by user:bob'));
  });
});
