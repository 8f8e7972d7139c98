// GET /api/overview's figures (Control.overview) over finished runs written in BullMQ's layout with known finish times:
// outcomes per window, the success rate, runs per hour, the jobs failing now, and only the jobs asked about.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Control } from '../src/control/control.ts';
import { registerDefinition } from '../src/jobs/define.ts';
import { Registry } from '../src/jobs/registry.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { until } from './helpers/wait.ts';

const PREFIX = 'ov';
const HOUR = 3_600_000;
let redis: TestRedis;
let control: Control;

/**
 * A finished run as a worker leaves it: its hash (with the outcome jobscope's worker records for a failure) and its id in
 * the job's completed or failed set.
 */
async function finished(job: string, id: number, endMs: number, error?: { name: string; message: string; outcome: string }): Promise<void> {
  const key = `${PREFIX}:${job}:${id}`;
  await control.redis.hset(key, {
    name: 'api',
    data: '{}',
    opts: '{"attempts":1,"jobscope":{}}',
    timestamp: endMs - 2000,
    processedOn: endMs - 1000,
    finishedOn: endMs,
    atm: 1,
    ...(error
      ? {
          failedReason: error.message,
          stacktrace: JSON.stringify([`${error.name}: ${error.message}\n    at test`]),
          jsOutcome: error.outcome,
        }
      : { returnvalue: '1' }),
  });
  await control.redis.zadd(`${PREFIX}:${job}:${error ? 'failed' : 'completed'}`, endMs, String(id));
}

before(async () => {
  redis = await startRedis();
  const registry = new Registry(
    ['a', 'b', 'c'].map((name) => registerDefinition(name, `${name}.ts`, { token: { audience: ['svc'] }, run: () => 1 })),
  );
  control = new Control({ redisUrl: redis.url, prefix: PREFIX, registry });
  await control.ready();
});

after(async () => {
  await control?.close();
  await redis?.destroy();
});

describe('the overview', () => {
  test('runs by outcome in 24 h and 7 days, success rate, runs per hour and the jobs failing now', async () => {
    const now = Date.now();
    // a: its last run completed (an hour ago) after a timeout; one more a day and a half ago.
    await finished('a', 1, now - 30 * HOUR);
    await finished('a', 2, now - 2 * HOUR, { name: 'RunTimeoutError', message: 'the run timed out after 300 ms', outcome: 'timeout' });
    await finished('a', 3, now - HOUR);
    // b: its last run failed (ten minutes ago).
    await finished('b', 1, now - 3 * HOUR);
    await finished('b', 2, now - 10 * 60_000, { name: 'Error', message: 'upstream said 503\nmore lines', outcome: 'failed' });
    // Older than 7 days: in no window.
    await finished('b', 3, now - 8 * 24 * HOUR);

    const o = await control.overview();
    assert.deepEqual(o.last24h, {
      finished: 4,
      completed: 2,
      failed: 1,
      timeout: 1,
      cancelled: 0,
      skipped: 0,
      misfire: 0,
      successRate: 0.5,
    });
    assert.deepEqual(o.last7d, {
      finished: 5,
      completed: 3,
      failed: 1,
      timeout: 1,
      cancelled: 0,
      skipped: 0,
      misfire: 0,
      successRate: 0.6,
    });
    assert.equal(o.jobs, 3);
    assert.deepEqual(o.workers, { alive: 0, dead: 0 });
    assert.equal(o.liveTokens, 0);

    // Failing now: b only (a's last run completed), with its run's outcome and the first line of its error.
    assert.deepEqual(
      o.failing.map((r) => [r.runId, r.outcome, r.error]),
      [['b:2', 'failed', 'upstream said 503']],
    );

    // Runs per hour: 48 buckets, the last one the current hour; each run in the bucket of its finish.
    assert.equal(o.hourly.length, 48);
    const hourOf = (ms: number) => new Date(Math.floor(ms / HOUR) * HOUR).toISOString();
    assert.equal(o.hourly[47].start, hourOf(now));
    const at = (ms: number) => o.hourly.find((b) => b.start === hourOf(ms));
    assert.equal(at(now - 30 * HOUR)?.completed, 1);
    assert.ok((at(now - 2 * HOUR)?.failed ?? 0) >= 1);
    assert.equal(
      o.hourly.reduce((n, b) => n + b.completed + b.failed, 0),
      5,
    );

    // A run that finishes now is in the next answer's current hour (the closed hours come from a cache).
    await finished('c', 1, Date.now());
    const again = await control.overview();
    assert.equal(again.hourly[47].completed, o.hourly[47].completed + 1);
    assert.equal(again.last24h.finished, 5);

    // A run of an hour already closed: counted once the closed hours are recounted (in the background, once a minute).
    await finished('c', 2, now - 5 * HOUR);
    const cachedHour = (await control.overview()).hourly.find((b) => b.start === hourOf(now - 5 * HOUR));
    assert.equal(cachedHour?.completed, at(now - 5 * HOUR)?.completed, 'from the cache until the recount');
    await control.runCounts.overview(control.registry.names, Date.now() + 61_000);
    await until(
      async () =>
        (await control.overview()).hourly.find((b) => b.start === hourOf(now - 5 * HOUR))?.completed === (cachedHour?.completed ?? 0) + 1,
      5000,
      'the recount of the closed hours',
    );

    // Only the jobs asked about (a login limited to job groups).
    const onlyA = await control.overview(['a']);
    assert.deepEqual([onlyA.jobs, onlyA.last7d.finished, onlyA.last7d.timeout, onlyA.failing.length], [1, 3, 1, 0]);
    assert.equal(
      onlyA.hourly.reduce((n, b) => n + b.completed + b.failed, 0),
      3,
    );
  });
});
