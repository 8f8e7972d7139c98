// A retry records who retried it: a run triggered by one user and retried by another through the API runs its new attempt
// with `triggeredBy` and the token's `act` claim naming the retrier (the run's first trigger is kept). Real Redis, a real
// runtime and server on 127.0.0.1; the claims are read from the token the attempt held (its own `ctx.token.claims`) and
// from the run's claims history, and the token is checked by the verifier as a service would.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { addUser } from '../src/server/users.ts';
import { jobscopeFixture, type Fixture } from './helpers/fixture.ts';
import { ADMIN, TestServer } from './helpers/server.ts';

const BOB = { user: 'bob', password: 'bob-operator-password' };

let fx: Fixture;
let state: string;
let srv: TestServer;

// Fails its first attempt; every attempt returns who it ran for, as its run and its token say.
const JOBS = {
  'flaky.ts': `export default { token: { audience: ['svc'] }, attempts: 1,
      async run(ctx) {
        if (ctx.run.attempt === 1) throw new Error('first attempt fails');
        return { triggeredBy: ctx.run.triggeredBy, trigger: ctx.run.trigger, act: ctx.token.claims.act ?? null, att: ctx.token.claims.att };
      } };`,
  'wait.ts': `export default { token: { audience: ['svc'] }, async run(ctx) {
      await new Promise((resolve, reject) => { const t = setTimeout(resolve, 20000); ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); }); });
    } };`,
};

before(async () => {
  state = mkdtempSync(path.join(os.tmpdir(), 'jobscope-retry-'));
  const usersFile = path.join(state, 'users.json');
  await addUser(usersFile, { name: BOB.user, role: 'operator', password: BOB.password });
  fx = await jobscopeFixture({ jobs: JOBS, env: { JOBSCOPE_PREFIX: 'ra' }, workers: true, server: { usersFile } });
  srv = fx.server;
});
after(async () => {
  await fx?.close();
  if (state) rmSync(state, { recursive: true, force: true });
});

describe('who acted: retry and cancel', () => {
  test("the retried attempt's triggeredBy and token act name who pressed Retry", async () => {
    const posted = await srv.request('/api/jobs/flaky/runs', { method: 'POST', auth: ADMIN, json: {} });
    assert.equal(posted.status, 202, posted.text);
    const { runId } = posted.body;
    assert.equal((await fx.wait(runId)).state, 'failed');
    const first = (await srv.request(`/api/runs/${runId}`, { auth: ADMIN })).body;
    assert.deepEqual(
      first.claims.map((c: { att: number; act: unknown }) => [c.att, c.act]),
      [[1, { sub: 'user:admin' }]],
    );

    const retried = await srv.request(`/api/runs/${runId}/retry`, { method: 'POST', auth: BOB });
    assert.equal(retried.status, 200, retried.text);
    await fx.waitFor(runId, (r) => r.state === 'completed', 15_000, 'the retried run');

    const report = await fx.run(runId);
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

  test('a cancel records who cancelled and from where; cancelling it again says it was cancelled', async () => {
    for (const [headers, where] of [
      [{ 'sec-fetch-site': 'same-origin' }, 'from the dashboard'],
      [{}, 'through the API'],
    ] as const) {
      const { runId } = (await srv.request('/api/jobs/wait/runs', { method: 'POST', auth: ADMIN, json: {} })).body;
      await fx.waitFor(runId, (r) => r.state === 'active', 10_000, 'the run to start');
      const cancel = await srv.request(`/api/runs/${runId}/cancel`, { method: 'POST', auth: BOB, headers });
      assert.equal(cancel.status, 200, cancel.text);
      const done = await fx.wait(runId);
      assert.equal(done.outcome, 'cancelled');
      assert.match(done.error ?? '', new RegExp(`cancelled by bob ${where}`));
      const again = await srv.request(`/api/runs/${runId}/cancel`, { method: 'POST', auth: BOB });
      assert.equal(again.status, 409);
      assert.equal(again.body.error, 'run_finished');
      assert.match(again.body.message, /has already been cancelled; nothing to cancel/);
    }
  });
});
