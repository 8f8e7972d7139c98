// Execution rules in one process against a real Redis: trigger options through the real API, priority, the runaway grace,
// rate limit, per-worker concurrency, resume keeping an `every` phase, and the token store's one-live-execution rule.
// (The cluster-wide guarantees are tested with several real processes in cluster*.test.ts.)
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Runtime } from '../src/runtime/runtime.ts';
import { TokenStore } from '../src/token/store.ts';
import { jobscopeFixture, type Fixture } from './helpers/fixture.ts';
import type { LogCapture } from './helpers/runtime.ts';
import { ADMIN, TestServer } from './helpers/server.ts';

// Handlers record into this process's global: [job, event, ms].
const record = (job: string) => `(globalThis.__events ??= []).push(['${job}', 'start', Date.now(), ctx.run.id])`;
const events = (): [string, string, number, string][] =>
  ((globalThis as { __events?: [string, string, number, string][] }).__events ??= []);

const JOBS = {
  'later.ts': `export default { token: { audience: ['svc'] }, async run() { return 1; } };`,
  'ordered.ts': `export default { token: { audience: ['svc'] }, async run(ctx) { ${record('ordered')}; } };`,
  // Ignores its signal for 1.2 s after a 200 ms timeout: settles within the grace.
  'stubborn.ts': `export default { token: { audience: ['svc'] }, timeout: '200ms', async run(ctx) {
    ${record('stubborn')}; await new Promise((r) => setTimeout(r, 1200)); (globalThis.__events ??= []).push(['stubborn', 'end', Date.now(), ctx.run.id]); } };`,
  // Ignores its signal for 6 s: past the 2 s grace it is a runaway and its slot is released.
  'runaway.ts': `export default { token: { audience: ['svc'] }, timeout: '200ms', async run(ctx) {
    ${record('runaway')}; await new Promise((r) => setTimeout(r, 6000)); } };`,
  'limited.ts': `export default { token: { audience: ['svc'] }, concurrency: 10, rateLimit: { max: 2, duration: '1s' }, async run(ctx) { ${record('limited')}; } };`,
  'capped.ts': `export default { token: { audience: ['svc'] }, concurrency: 4, concurrencyPerWorker: 1, async run(ctx) {
    ${record('capped')}; await new Promise((r) => setTimeout(r, 300)); (globalThis.__events ??= []).push(['capped', 'end', Date.now(), ctx.run.id]); } };`,
  'phased.ts': `export default { token: { audience: ['svc'] }, schedule: { every: '5s' }, async run() {} };`,
};

let fx: Fixture;
let runtime: Runtime;
let logs: LogCapture;
let server: TestServer;
const env = { JOBSCOPE_PREFIX: 'ex', JOBSCOPE_RUNAWAY_GRACE: '2s' };

before(async () => {
  fx = await jobscopeFixture({ jobs: JOBS, env, server: true });
  ({ runtime, logs, server } = fx);
});
after(async () => {
  await fx.close();
});

const post = (job: string, json: unknown) => server.request(`/api/jobs/${job}/runs`, { method: 'POST', auth: ADMIN, json });

describe('trigger options through the API', () => {
  test('delay and at make a delayed run with its due time; bad options are a 400 with the reason', async () => {
    const before = Date.now();
    const delayed = await post('later', { data: {}, delay: '1h' });
    assert.equal(delayed.status, 202);
    const run = (await server.request(`/api/runs/${delayed.body.runId}`, { auth: ADMIN })).body;
    assert.equal(run.state, 'delayed');
    assert.equal(run.outcome, null);
    const due = Date.parse(run.dueAt);
    assert.ok(due >= before + 3_600_000 && due <= Date.now() + 3_600_000, `due in an hour, not ${run.dueAt}`);
    const at = new Date(Date.now() + 120_000).toISOString();
    const scheduled = await post('later', { at });
    assert.equal(scheduled.status, 202);
    const run2 = (await server.request(`/api/runs/${scheduled.body.runId}`, { auth: ADMIN })).body;
    assert.ok(Math.abs(Date.parse(run2.dueAt) - Date.parse(at)) < 1000, `${run2.dueAt} is ${at}`);

    for (const [body, reason] of [
      [{ delay: '1s', at }, /give delay or at, not both/],
      [{ delay: 'later' }, /delay: "later" is not a duration/],
      [{ priority: -1 }, /priority: must be an integer from 1/],
      [{ key: 42 }, /key: must be a string/],
      [{ at: '2020-01-01T00:00:00Z' }, /is in the past/],
      [{ data: {}, retries: 3 }, /retries: not a field of a trigger; allowed: data, trigger, delay, at, priority, key/],
    ] as const) {
      const res = await post('later', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.match(res.body.message, reason);
    }
    await fx.client.cancel(delayed.body.runId);
    await fx.client.cancel(scheduled.body.runId);
  });

  test('key: the same key while the first run is kept returns it (200), a new key makes a new run (202)', async () => {
    const first = await post('later', { data: {}, key: 'invoice-2026-12' });
    assert.equal(first.status, 202);
    const again = await post('later', { data: {}, key: 'invoice-2026-12' });
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, { runId: first.body.runId, existing: true });
    const other = await post('later', { data: {}, key: 'invoice-2027-01' });
    assert.equal(other.status, 202);
    assert.notEqual(other.body.runId, first.body.runId);
    assert.equal((await fx.api.job('later')).counts.waiting, 2, 'two runs, not three');
    await fx.client.cancel(first.body.runId);
    await fx.client.cancel(other.body.runId);
  });
});

describe('run order, slots and limits', () => {
  before(async () => {
    await runtime.startWorkers();
  });

  test('priority: of the runs waiting, priority 1 starts before priority 5', async () => {
    await runtime.pause('ordered');
    const low = { runId: await fx.trigger('ordered', {}, { priority: 5 }) };
    const high = { runId: await fx.trigger('ordered', {}, { priority: 1 }) };
    await runtime.resume('ordered');
    await fx.wait(low.runId);
    assert.deepEqual(
      events()
        .filter(([j]) => j === 'ordered')
        .map(([, , , id]) => id),
      [high.runId, low.runId],
    );
  });

  test('an aborted handler keeps its slot until it settles, within the runaway grace; past it, a runaway releases it', async () => {
    const a = { runId: await fx.trigger('stubborn') };
    const b = { runId: await fx.trigger('stubborn') };
    const ra = await fx.wait(a.runId);
    assert.equal(ra.outcome, 'timeout');
    await fx.wait(b.runId);
    const [startB] = events().filter(([j, e, , id]) => j === 'stubborn' && e === 'start' && id === b.runId);
    const [endA] = events().filter(([j, e, , id]) => j === 'stubborn' && e === 'end' && id === a.runId);
    assert.ok(startB[2] >= endA[2], 'the second run started only after the first handler had really stopped');
    assert.doesNotMatch(logs.text, /runaway/);

    const c = { runId: await fx.trigger('runaway') };
    const d = { runId: await fx.trigger('runaway') };
    await fx.wait(d.runId, 15_000);
    const [startC] = events().filter(([j, , , id]) => j === 'runaway' && id === c.runId);
    const [startD] = events().filter(([j, , , id]) => j === 'runaway' && id === d.runId);
    const gap = startD[2] - startC[2];
    assert.ok(gap >= 2000 && gap < 5000, `the slot was held for timeout + grace (2.2 s), then released: ${gap} ms`);
    assert.match(logs.text, /"run":"runaway:[^"]+".*runaway: the handler ignored ctx.signal/);
  });

  test('rateLimit: at most 2 starts per second, on a job allowed 10 at once', async () => {
    const runs = await Promise.all(Array.from({ length: 6 }, async () => ({ runId: await fx.trigger('limited') })));
    for (const r of runs) await fx.wait(r.runId);
    const starts = events()
      .filter(([j]) => j === 'limited')
      .map(([, , t]) => t)
      .sort((x, y) => x - y);
    assert.equal(starts.length, 6);
    // Fixed windows of 1 s and 2 starts each: 6 starts need 3 windows, so the last is at least ~2 s after the first.
    assert.ok(starts[5] - starts[0] >= 1900, `starts spread over ${starts[5] - starts[0]} ms`);
  });

  test('concurrencyPerWorker caps each worker below the cluster-wide concurrency', async () => {
    const second = await fx.another({ workers: ['capped'] });
    try {
      const runs = await Promise.all(Array.from({ length: 8 }, async () => ({ runId: await fx.trigger('capped') })));
      for (const r of runs) await fx.wait(r.runId);
      const timeline = events()
        .filter(([j]) => j === 'capped')
        .map(([, e, t]) => [t, e === 'start' ? 1 : -1] as const)
        .sort((x, y) => x[0] - y[0] || x[1] - y[1]);
      let now = 0;
      let max = 0;
      for (const [, delta] of timeline) max = Math.max(max, (now += delta));
      assert.equal(max, 2, 'two workers, one run each at a time (the cluster limit of 4 is not the binding one)');
    } finally {
      await second.close();
    }
  });
});

describe('schedules', () => {
  test('resume keeps an every-schedule on its phase: no fire at once, none shifted', async () => {
    await runtime.syncSchedules();
    // The scheduler entry as BullMQ keeps it: its next fire time is the phase.
    const queue = fx.queue('phased');
    const before = await queue.getJobScheduler('phased');
    assert.ok(before?.next);
    await runtime.pause('phased');
    await new Promise((r) => setTimeout(r, 1200));
    const resumedAt = Date.now();
    await runtime.resume('phased');
    const afterResume = await queue.getJobScheduler('phased');
    assert.ok(afterResume?.next);
    assert.equal(afterResume.next % 5000, before.next % 5000, 'same phase');
    assert.ok(afterResume.next > resumedAt, 'the next fire is in the future, not at once');
  });
});

describe('one live execution per run (token store)', () => {
  test('an execution’s first token revokes the run’s earlier tokens; a token is not registered without the run’s lock', async () => {
    const store = new TokenStore(fx.redis, 'ex-tokens');
    const claims = (jti: string) => ({ iss: 'i', sub: 'job:j', aud: ['svc'], scope: '', jti, iat: 1, nbf: 1, exp: 2, run: 'j:7', att: 1 });
    const exp = Date.now() + 60_000;
    await store.register(claims('crashed'), exp);
    await fx.redis.set('ex-tokens:j:7:lock', 'exec-2');
    await store.register(claims('second-exec'), exp, { key: 'ex-tokens:j:7:lock', token: 'exec-2', first: true });
    assert.equal(await store.isLive('crashed'), false, 'the crashed execution’s token is revoked when the run is re-run');
    assert.equal(await store.isLive('second-exec'), true);
    await assert.rejects(
      store.register(claims('stale-remint'), exp, { key: 'ex-tokens:j:7:lock', token: 'exec-1', first: false }),
      (err: Error & { code?: string }) => err.code === 'ERR_LOCK_LOST',
    );
    assert.equal(await store.isLive('stale-remint'), false, 'an execution that lost the lock cannot mint a live token');
    assert.equal(await store.isLive('second-exec'), true, 'and does not disturb the live execution');
  });
});
