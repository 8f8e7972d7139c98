// The read model takes a failed run's outcome from the field its worker recorded (RUN_FIELDS.outcome), never from its
// error: a handler's own error class named like one of jobscope's (RunTimeoutError) is a plain failure in the report, the
// run detail, the history rows and the history's outcome filter, while a real timeout is 'timeout' in all four. Real Redis.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jobscopeFixture, type Fixture } from './helpers/fixture.ts';

let fx: Fixture;

before(async () => {
  fx = await jobscopeFixture({
    jobs: {
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
    },
    env: { JOBSCOPE_PREFIX: 'model' },
    workers: true,
    server: true,
  });
});

after(async () => {
  await fx?.close();
});

describe('the outcome of a failed run', () => {
  test('comes from the recorded field, not from the name of the error', async () => {
    const impostor = await fx.trigger('impostor');
    const hang = await fx.trigger('hang');
    assert.equal((await fx.wait(impostor)).state, 'failed');
    assert.equal((await fx.wait(hang)).state, 'failed');

    const report = await fx.run(impostor);
    assert.match(String(report.error), /my own error/);
    assert.equal(report.outcome, 'failed', 'a handler error named RunTimeoutError is a failure, not a timeout');
    assert.equal((await fx.run(hang)).outcome, 'timeout');

    const detail = await fx.api.run(impostor);
    assert.equal(detail.outcome, 'failed');
    assert.deepEqual(
      detail.attemptList.map((a: { outcome: string }) => a.outcome),
      ['failed'],
    );

    const all = await fx.api.get('/api/runs');
    assert.equal(all.status, 200, all.text);
    const rows = new Map((all.body.runs as { runId: string; outcome: string }[]).map((r) => [r.runId, r.outcome]));
    assert.equal(rows.get(impostor), 'failed');
    assert.equal(rows.get(hang), 'timeout');
    const timedOut = await fx.api.get('/api/runs?state=timeout');
    assert.equal(timedOut.status, 200, timedOut.text);
    const timeouts = (timedOut.body.runs as { runId: string }[]).map((r) => r.runId);
    assert.deepEqual(timeouts, [hang], 'the index files the impostor under failed');
  });
});
