// The operations console's API against a real Redis, real workers and real HTTP on 127.0.0.1: the Run page's data (one row
// per attempt with its error and token claims, log lines with time and attempt), Retry (admin only, failed runs only),
// the executor registry (live and dead workers), a job's statistics and its schedule in words, and `keep` in job files.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bucketStats, percentile, tzOffsetMs } from '../src/control/stats.ts';
import { registerDefinition } from '../src/jobs/define.ts';
import { jobscopeFixture, type Fixture } from './helpers/fixture.ts';
import { ADMIN, JWT_LIKE, TestServer, VIEWER } from './helpers/server.ts';

let fx: Fixture;
let srv: TestServer;

before(async () => {
  fx = await jobscopeFixture({
    jobs: {
      'flaky.ts': `export default {
      token: { audience: ['svc'], scope: ['flaky:run'] },
      attempts: 3,
      backoff: { type: 'fixed', delay: 50 },
      async run(ctx) {
        await ctx.log('attempt ' + ctx.run.attempt + ' with ' + ctx.token.reveal());
        if (ctx.run.attempt < 3) throw new Error('attempt ' + ctx.run.attempt + ' fails');
        await new Promise((r) => setTimeout(r, 30));
        await ctx.log('done');
        return { attempt: ctx.run.attempt };
      },
    };`,
      'broken.ts': `export default {
      token: { audience: ['svc'] },
      async run(ctx) {
        if (!ctx.data.fixed) throw new Error('broken until fixed');
        return 'fixed';
      },
    };`,
      'nightly.ts': `export default {
      schedule: { cron: '0 30 2 * * 1-5', tz: 'Asia/Shanghai' },
      token: { audience: ['svc'] },
      keep: { failed: { count: 10, age: '2d' } },
      async run() { return 1; },
    };`,
    },
    env: { JOBSCOPE_PREFIX: 'con' },
    workers: ['flaky', 'broken'],
    server: true,
  });
  srv = fx.server;
});

after(async () => {
  await fx?.close();
});

describe('the Run page: GET /api/runs/:runId', () => {
  test('one row per attempt with its times, outcome, error and token; log lines with their time and attempt', async () => {
    const runId = await fx.api.trigger('flaky', {}, { trigger: 'manual' });
    const done = await fx.wait(runId);
    assert.equal(done.outcome, 'completed');
    const res = await srv.request(`/api/runs/${encodeURIComponent(runId)}`, { auth: VIEWER });
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.text, JWT_LIKE);
    const run = res.body;
    assert.deepEqual(
      run.attemptList.map((a: { attempt: number; outcome: string; error: string | null }) => [a.attempt, a.outcome, a.error]),
      [
        [1, 'failed', 'Error: attempt 1 fails'],
        [2, 'failed', 'Error: attempt 2 fails'],
        [3, 'completed', null],
      ],
    );
    for (const a of run.attemptList) {
      assert.ok(Date.parse(a.startedAt) <= Date.parse(a.finishedAt), 'start before end');
      assert.equal(a.durationMs, Date.parse(a.finishedAt) - Date.parse(a.startedAt));
      assert.equal(a.claims.length, 1, 'one token per attempt');
      assert.equal(a.claims[0].att, a.attempt);
      assert.deepEqual(a.claims[0].act, { sub: 'user:admin' });
    }
    assert.ok(run.attemptList[2].durationMs >= 30);
    // Attempts follow each other: the second starts after the first ended (the backoff between them).
    assert.ok(Date.parse(run.attemptList[1].startedAt) >= Date.parse(run.attemptList[0].finishedAt));
    assert.deepEqual(
      run.logLines.map((l: { line: string; attempt: number }) => [l.attempt, l.line]),
      [
        [1, 'attempt 1 with [redacted token]'],
        [2, 'attempt 2 with [redacted token]'],
        [3, 'attempt 3 with [redacted token]'],
        [3, 'done'],
      ],
    );
    for (const [i, l] of run.logLines.entries()) {
      const row = run.attemptList[l.attempt - 1];
      assert.ok(
        Date.parse(l.time) >= Date.parse(row.startedAt) && Date.parse(l.time) <= Date.parse(row.finishedAt),
        `line ${i} in its attempt`,
      );
    }
    assert.equal(run.triggeredBy, 'user:admin');
    assert.deepEqual(
      run.logs,
      run.logLines.map((l: { line: string }) => l.line),
      'logs stay as they were',
    );
  });
});

describe('POST /api/runs/:runId/retry', () => {
  test('retries a failed run (admin only); a run that has not failed is 409, an unknown one 404', async () => {
    const runId = await fx.api.trigger('broken', {}, { trigger: 'manual' });
    assert.equal((await fx.wait(runId)).outcome, 'failed');
    const viewer = await srv.request(`/api/runs/${encodeURIComponent(runId)}/retry`, { method: 'POST', auth: VIEWER });
    assert.equal(viewer.status, 403);
    // Make the next attempt succeed (the run keeps its data, edited on Bull Board): retrying runs the same run again.
    const edit = await srv.request(`/dashboard/queues/api/queues/broken/${runId.split(':')[1]}/update-data`, {
      method: 'PATCH',
      auth: ADMIN,
      json: { jobData: { fixed: true } },
    });
    assert.equal(edit.status, 200, edit.text);
    const res = await srv.request(`/api/runs/${encodeURIComponent(runId)}/retry`, { method: 'POST', auth: ADMIN });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { runId, state: 'waiting' });
    const again = await fx.wait(runId);
    assert.equal(again.outcome, 'completed');
    assert.equal(again.result, 'fixed');
    const detail = (await srv.request(`/api/runs/${encodeURIComponent(runId)}`, { auth: ADMIN })).body;
    assert.deepEqual(
      detail.attemptList.map((a: { attempt: number; outcome: string }) => [a.attempt, a.outcome]),
      [
        [1, 'failed'],
        [2, 'completed'],
      ],
    );
    assert.ok(detail.logs.includes('retried by user:admin'), 'who retried is on the run');

    const completed = await srv.request(`/api/runs/${encodeURIComponent(runId)}/retry`, { method: 'POST', auth: ADMIN });
    assert.equal(completed.status, 409);
    assert.equal(completed.body.error, 'not_failed');
    assert.match(completed.body.message, /is completed: only a failed run can be retried/);
    const unknown = await srv.request('/api/runs/broken%3A999/retry', { method: 'POST', auth: ADMIN });
    assert.equal(unknown.status, 404);
  });
});

describe('GET /api/workers: the executor registry', () => {
  test('live workers from their heartbeats, and a worker gone silent marked dead', async () => {
    const dead = {
      id: 'old-host:77:abcd1234',
      host: 'old-host',
      pid: 77,
      versions: { jobscope: '0.0.9', node: 'v20.19.0' },
      groups: ['reports'],
      jobs: ['nightly'],
      active: [],
      startedAt: new Date(Date.now() - 7200_000).toISOString(),
      lastSeen: new Date(Date.now() - 60_000).toISOString(),
    };
    // A heartbeat as a worker process writes it (RedisKeys.workers), last seen a minute ago.
    await fx.redis.hset('con:workers', dead.id, JSON.stringify(dead));
    const res = await srv.request('/api/workers', { auth: VIEWER });
    assert.equal(res.status, 200);
    const list = res.body as { id: string; host: string; pid: number; alive: boolean; jobs: string[]; versions: { node: string } }[];
    const me = list.find((w) => w.pid === process.pid);
    assert.ok(me, JSON.stringify(list));
    assert.equal(me.alive, true);
    assert.deepEqual(me.jobs.sort(), ['broken', 'flaky']);
    assert.equal(me.versions.node, process.version);
    const gone = list.find((w) => w.id === dead.id);
    assert.equal(gone?.alive, false);
    assert.equal(list[list.length - 1].id, dead.id, 'live workers first');
    // The per-queue connections are still there, under their own route.
    const connections = await srv.request('/api/workers/connections', { auth: VIEWER });
    assert.equal(connections.status, 200);
    assert.equal(connections.body.find((q: { job: string }) => q.job === 'flaky').workers.length, 1);
  });
});

describe('a job: GET /api/jobs/:name and /stats', () => {
  test('the schedule in words with its time zone, retention, and success rate and durations per hour and day', async () => {
    const job = (await srv.request('/api/jobs/nightly', { auth: VIEWER })).body;
    assert.equal(job.scheduleText, 'cron 0 30 2 * * 1-5 (Asia/Shanghai)');
    assert.equal(job.scheduleWords, 'At 02:30, Monday through Friday');
    assert.equal(job.timeZone, 'Asia/Shanghai');
    assert.deepEqual(job.retention, { completed: { count: 1000, age: 604800 }, failed: { count: 10, age: 172800 }, logs: 1000 });

    const res = await srv.request('/api/jobs/flaky/stats?tz=Europe/Paris', { auth: VIEWER });
    assert.equal(res.status, 200, res.text);
    const stats = res.body;
    assert.equal(stats.tz, 'Europe/Paris');
    assert.equal(stats.hourly.length, 48);
    assert.ok(stats.daily.length >= 30 && stats.daily.length <= 31);
    const thisHour = stats.hourly[stats.hourly.length - 1];
    assert.equal(thisHour.runs, stats.runs);
    assert.equal(thisHour.completed, stats.runs);
    assert.equal(thisHour.successRate, 1);
    assert.ok(thisHour.p50Ms > 100 && thisHour.p95Ms >= thisHour.p50Ms, 'the run took its backoffs and attempts');
    assert.equal((await srv.request('/api/jobs/flaky/stats?tz=Mars/Olympus', { auth: VIEWER })).status, 400);
    assert.equal((await srv.request('/api/jobs/nope/stats', { auth: VIEWER })).status, 404);
  });

  test('buckets: nearest-rank percentiles, days cut in the given time zone (daylight saving included)', () => {
    assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50), 5);
    assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95), 10);
    assert.equal(percentile([], 50), null);
    assert.equal(tzOffsetMs('Asia/Shanghai', Date.UTC(2026, 0, 1)), 8 * 3600_000);
    assert.equal(tzOffsetMs('Europe/Paris', Date.UTC(2026, 6, 1)), 2 * 3600_000);
    const now = Date.UTC(2026, 2, 30, 12); // the day after Europe's switch to summer time
    const points = [
      { end: Date.UTC(2026, 2, 29, 21, 30), ok: true, ms: 100 }, // 23:30 in Paris (UTC+2 since the 29th, 01:00 UTC)
      { end: Date.UTC(2026, 2, 29, 22, 30), ok: false, ms: 300 }, // 00:30 on the 30th in Paris
      { end: Date.UTC(2026, 2, 30, 11, 0), ok: true, ms: 200 },
    ];
    const { hourly, daily } = bucketStats(points, 'Europe/Paris', now);
    const last = daily[daily.length - 1];
    assert.equal(last.start, '2026-03-29T22:00:00.000Z', 'midnight in Paris (summer time)');
    assert.deepEqual([last.runs, last.completed, last.p50Ms, last.p95Ms], [2, 1, 200, 300]);
    assert.equal(daily[daily.length - 2].start, '2026-03-28T23:00:00.000Z', 'midnight in Paris (winter time)');
    assert.equal(daily[daily.length - 2].runs, 1);
    assert.equal(
      hourly.reduce((n, b) => n + b.runs, 0),
      3,
    );
  });
});

describe('keep in a job file', () => {
  const def = (keep: unknown) => ({ token: { audience: ['svc'] }, keep, run: () => 1 });
  test('valid rules become BullMQ retention (ages in seconds); mistakes name the field', () => {
    assert.deepEqual(registerDefinition('j', 'j.ts', def({ completed: { count: 10, age: '1h' }, failed: { age: 5000 } })).keep, {
      completed: { count: 10, age: 3600 },
      failed: { age: 5 },
    });
    const bad: [unknown, RegExp][] = [
      ['lots', /keep: must be/],
      [{ done: {} }, /keep\.done: unknown field/],
      [{ completed: { count: -1 } }, /keep\.completed\.count: must be an integer >= 0/],
      [{ completed: { count: 1.5 } }, /keep\.completed\.count/],
      [{ failed: { age: 'forever' } }, /keep\.failed\.age: "forever" is not a duration/],
      [{ failed: { age: '10ms' } }, /keep\.failed\.age/],
      [{ failed: { ttl: 5 } }, /keep\.failed\.ttl: unknown field; allowed: count, age/],
    ];
    for (const [keep, message] of bad) assert.throws(() => registerDefinition('j', 'j.ts', def(keep)), message, JSON.stringify(keep));
  });
});
