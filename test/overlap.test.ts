// overlap: 'skip' and 'replace' (xxl-job's "discard later" and "cover early") against a real Redis.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Runtime } from '../src/runtime/runtime.ts';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';

// Runs until aborted or released through Redis-free means: a short fixed wait, honouring ctx.signal.
const body = (ms: number) => `async run(ctx) {
  await new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ${ms});
    ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); });
  });
  return { done: ctx.run.id };
}`;

let fx: Fixture;
let runtime: Runtime;

before(async () => {
  fx = await jobscopeFixture({
    jobs: {
      'only-one.ts': `export default { token: { audience: ['svc'] }, overlap: 'skip', ${body(800)} };`,
      'latest.ts': `export default { token: { audience: ['svc'] }, overlap: 'replace', ${body(5000)} };`,
      'newest-wins.ts': `export default { token: { audience: ['svc'] }, overlap: 'replace', concurrency: 1, ${body(600)} };`,
      'ticker.ts': `export default { token: { audience: ['svc'] }, overlap: 'skip', schedule: { every: '1s' }, ${body(2500)} };`,
    },
    env: { JOBSCOPE_PREFIX: 'ov' },
    workers: ['only-one', 'latest', 'newest-wins'],
    // The live tokens, as GET /api/tokens lists them.
    server: true,
  });
  ({ runtime } = fx);
});
after(async () => {
  await fx.close();
});

async function activeRun(runId: string): Promise<void> {
  await fx.waitFor(runId, (r) => r.state === 'active', 5000, `${runId} to be active`);
}

describe('overlap', () => {
  test('skip: a trigger while a run is active is refused; after it finishes, triggers work again', async () => {
    const first = { runId: await fx.trigger('only-one') };
    await activeRun(first.runId);
    await assert.rejects(fx.trigger('only-one'), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_OVERLAP_SKIPPED');
      assert.match(err.message, /overlap: 'skip' and a run is already waiting, delayed, active or waiting for a retry/);
      assert.equal((err as Error & { blocking?: string }).blocking, first.runId, 'the refusal names the run in the way');
      return true;
    });
    assert.equal((await fx.wait(first.runId)).state, 'completed');
    const again = { runId: await fx.trigger('only-one') };
    assert.equal((await fx.wait(again.runId)).state, 'completed');
  });

  test('replace: a new trigger cancels the active run (its token revoked) and runs', async () => {
    const first = { runId: await fx.trigger('latest') };
    await activeRun(first.runId);
    const second = { runId: await fx.trigger('latest') };
    const old = await fx.wait(first.runId);
    assert.equal(old.state, 'failed');
    assert.match(old.error!, /run cancelled: replaced by a newer run/);
    await fx.waitFor(second.runId, (r) => r.state === 'active', 5000, 'the newer run to start');
    // Active comes a moment before its token is minted: wait for the token, then check there is no other.
    await until(async () => (await fx.api.tokens()).length > 0, 5000, 'the newer run to hold its token');
    const tokens = await fx.api.tokens();
    assert.deepEqual(
      tokens.map((t) => t.run),
      [second.runId],
      'only the newer run holds a live token',
    );
    await fx.client.cancel(second.runId, 'test over');
    assert.equal((await fx.wait(second.runId)).state, 'failed');
    assert.deepEqual(await fx.api.tokens(), []);
  });

  test('replace: an older run the newer trigger could not cancel does not run after the newer one has finished', async () => {
    // The burst race, made deterministic: run B is reserved, then a newer trigger C reserves and looks for B before B is
    // added (so its cancel finds nothing), then B is added. B waits behind C (concurrency 1) and starts after C completed.
    const older = 'older-run';
    assert.equal((await runtime.queues.overlap.claim('newest-wins', older, 'replace')).ok, true);
    const newer = { runId: await fx.trigger('newest-wins') };
    await fx.queue('newest-wins').add('api', {}, { jobId: older });
    assert.equal((await fx.wait(newer.runId)).state, 'completed');
    const report = await fx.wait(`newest-wins:${older}`);
    assert.equal(report.state, 'failed', JSON.stringify(report));
    assert.match(report.error!, new RegExp(`replaced by a newer run: ${newer.runId}`));
  });

  test('skip: a scheduled fire that came due while a run was active is recorded as skipped', async () => {
    const scheduled = await fx.another({ workers: ['ticker'] });
    try {
      await scheduled.syncSchedules();
      // The scheduler's fires as BullMQ keeps them (the skipped ones are failed jobs).
      const queue = fx.queue('ticker');
      // Runs take 2.5 s and fires come every second: the fire due during a run must not run after it.
      await until(
        async () => (await queue.getCompletedCount()) >= 1 && (await queue.getFailedCount()) >= 1,
        12_000,
        'a finished ticker run and a skipped fire',
      );
      await scheduled.pause('ticker');
      const ran = (await queue.getCompleted(0, -1)).filter((j) => (j.returnvalue as { done?: string }).done);
      assert.ok(ran.length >= 1, 'a scheduled run ran');
      const skipped = await Promise.all((await queue.getFailed(0, -1)).map((j) => fx.run(`ticker:${j.id}`)));
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
