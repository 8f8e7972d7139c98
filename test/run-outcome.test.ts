// A failed run's outcome is recorded explicitly (RUN_FIELDS.outcome, run/record.ts) by the runtime that ended it, not read
// back from the error's name: a handler that throws an error named RunTimeoutError (a plain Error renamed, or a class of its
// own) is 'failed', while a real timeout records 'timeout' and a cancel 'cancelled'. The error itself is recorded as thrown.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseRunId } from '../src/run/model.ts';
import { RUN_FIELDS, RedisKeys } from '../src/run/redis-keys.ts';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';

const JOBS = {
  'renamed.ts': `export default { token: { audience: ['svc'] }, attempts: 1, async run(ctx) {
    await ctx.log('about to throw');
    throw Object.assign(new Error('mine'), { name: 'RunTimeoutError' });
  } };`,
  'lookalike.ts': `class RunTimeoutError extends Error {
    constructor() { super('mine too'); this.name = 'RunTimeoutError'; }
  }
  export default { token: { audience: ['svc'] }, attempts: 1, async run() { throw new RunTimeoutError(); } };`,
  'slow.ts': `export default { token: { audience: ['svc'] }, attempts: 1, timeout: '200ms', async run(ctx) {
    await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
  } };`,
  'forever.ts': `export default { token: { audience: ['svc'] }, attempts: 1, async run(ctx) {
    (globalThis.__outcomeStarted ??= []).push(ctx.run.id);
    await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
  } };`,
};

let fx: Fixture;

before(async () => {
  fx = await jobscopeFixture({ jobs: JOBS, env: { JOBSCOPE_PREFIX: 'oc' }, workers: true });
});
after(async () => {
  await fx?.close();
});

/**
 * The fields of the run's hash that the worker wrote: its outcome, and its log lines' times. Redis internals on purpose (what
 * run/record.ts wrote, not what the read model makes of it), read on the fixture's own connection.
 */
async function recorded(runId: string): Promise<{ outcome: string | null; logMeta: string | null }> {
  const { job, id } = parseRunId(runId);
  const key = new RedisKeys(fx.prefix).bullJob(job, id);
  const [outcome, logMeta] = await fx.redis.hmget(key, RUN_FIELDS.outcome, RUN_FIELDS.logMeta);
  return { outcome, logMeta };
}

describe("a failed run's outcome is what ended it, never its error's name", () => {
  test("a plain Error named 'RunTimeoutError' is a failure (and ctx.log still records its line's time)", async () => {
    const runId = await fx.trigger('renamed');
    const report = await fx.wait(runId);
    assert.equal(report.state, 'failed');
    assert.equal(report.error, 'mine');
    const { outcome, logMeta } = await recorded(runId);
    assert.equal(outcome, 'failed');
    assert.deepEqual(report.logs, ['about to throw']);
    assert.match(logMeta ?? '', /^\d+,1$/, 'one time and attempt for the one log line');
  });

  test("a class of the handler's own named RunTimeoutError is a failure", async () => {
    const runId = await fx.trigger('lookalike');
    const report = await fx.wait(runId);
    assert.equal(report.state, 'failed');
    assert.equal(report.error, 'mine too');
    assert.equal((await recorded(runId)).outcome, 'failed');
  });

  test("a real timeout records 'timeout'", async () => {
    const runId = await fx.trigger('slow');
    const report = await fx.wait(runId);
    assert.equal(report.state, 'failed');
    assert.match(report.error ?? '', /timed out after 200 ms/);
    assert.equal((await recorded(runId)).outcome, 'timeout');
  });

  test("a cancel records 'cancelled'", async () => {
    const runId = await fx.trigger('forever');
    const started = () => ((globalThis as { __outcomeStarted?: string[] }).__outcomeStarted ?? []).includes(runId);
    await until(started, 10_000, 'the run to start');
    await fx.client.cancel(runId, 'test');
    const report = await fx.wait(runId);
    assert.equal(report.state, 'failed');
    assert.match(report.error ?? '', /cancelled: test/);
    assert.equal((await recorded(runId)).outcome, 'cancelled');
  });
});
