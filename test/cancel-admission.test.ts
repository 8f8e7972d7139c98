// A cancel that comes while a run's attempt is still being admitted (its overlap rule reading Redis) reaches the execution
// that attempt starts: the handler never runs and the run ends cancelled. The executor hears cancels itself (the cancel
// broadcast) and no longer through BullMQ's per-run AbortController, so this is the case that needs the executor's own
// bookkeeping. Real Redis, a real runtime; the admission is held at its overlap claim by the test, so the order is exact.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { jobscopeFixture, type Fixture } from './helpers/fixture.ts';
import { until } from './helpers/wait.ts';

const g = globalThis as Record<string, unknown>;
let fx: Fixture;

before(async () => {
  fx = await jobscopeFixture({
    jobs: {
      // overlap 'replace': admission claims the run's place in Redis (control/overlap.ts) before the handler may start.
      'guarded.ts': `export default { token: { audience: ['svc'] }, overlap: 'replace',
        async run() { globalThis.__guardedRan = true; return 'ran'; } };`,
    },
    env: { JOBSCOPE_PREFIX: 'ca' },
    workers: true,
  });
});

after(async () => {
  await fx?.close();
});

test('a cancel heard while the attempt is admitted starts its execution cancelled: the handler never runs', async () => {
  const overlap = fx.runtime.control.queues.overlap;
  const claim = overlap.claim.bind(overlap);
  let entered!: () => void;
  const inAdmission = new Promise<void>((resolve) => (entered = resolve));
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  overlap.claim = (async (...args: Parameters<typeof claim>) => {
    entered();
    await held;
    return claim(...args);
  }) as typeof claim;
  try {
    const runId = await fx.trigger('guarded');
    await Promise.race([inAdmission, until(() => false, 10_000, 'the attempt to reach its overlap claim')]);
    const cancelled = await fx.client.cancel(runId);
    assert.equal(cancelled.outcome, 'signalled', 'the run is active (taken), so the cancel is broadcast');
    // The broadcast reaches this process's executor over Redis pub/sub: give it the time to arrive before admission goes on.
    const logged = () => fx.logs.lines.some((l) => l.includes('"run cancel requested"') && l.includes(`"run":"${runId}"`));
    await until(logged, 5000, 'the executor to hear the cancel');
    release();
    const run = await fx.wait(runId);
    assert.equal(run.outcome, 'cancelled');
    assert.equal(g.__guardedRan, undefined, 'the handler never ran');
  } finally {
    release();
    overlap.claim = claim;
  }
});
