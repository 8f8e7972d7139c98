// Schedules are code: Bull Board's own scheduler routes, called as the admin against a real server and Redis, cannot edit or
// remove a schedule, nor move, change or promote the run a scheduler holds for its next fire; the scheduler in Redis is
// unchanged afterwards. Reading schedulers still works, and "Run now" is a manual run through jobscope's enqueue.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jobscopeFixture, type Fixture } from './helpers/fixture.ts';
import { ADMIN, TestServer, VIEWER } from './helpers/server.ts';

const BOARD = '/dashboard/queues/api';

let fx: Fixture;
let srv: TestServer;

before(async () => {
  fx = await jobscopeFixture({
    jobs: {
      'nightly.ts': `export default {
      description: 'Runs at 03:00 UTC',
      schedule: { cron: '0 0 3 * * *', tz: 'UTC' },
      token: { audience: ['svc'] },
      overlap: 'skip',
      async run() { return {}; },
    };`,
      'tick.ts': `export default {
      schedule: { every: '1h' },
      token: { audience: ['svc'] },
      async run() { return {}; },
    };`,
    },
    env: { JOBSCOPE_PREFIX: 'bbs' },
    // No workers: runs stay where the routes put them.
    schedules: true,
    server: true,
  });
  srv = fx.server;
});

after(async () => {
  await fx?.close();
});

/** What a scheduler fires: its schedule and its next fire time (BullMQ's scheduler entry, read on the test's connection). */
async function scheduler(job: string) {
  const s = await fx.queue(job).getJobScheduler(job);
  assert.ok(s, `the scheduler of ${job} is in Redis`);
  return { pattern: s.pattern, every: s.every, tz: s.tz, next: s.next, template: s.template };
}

/** The run the scheduler holds for its next fire, and how it stands. */
async function nextFire(job: string) {
  const { next } = await scheduler(job);
  const run = await fx.queue(job).getJob(`repeat:${job}:${next}`);
  assert.ok(run, 'the next fire is a delayed run');
  return { id: run.id!, state: await run.getState(), delay: run.delay, data: run.data, priority: run.priority };
}

function fileOf(job: string): string {
  return path.relative(process.cwd(), path.join(fx.dir, `${job}.ts`));
}

function assertScheduleIsCode(
  res: { status: number; text: string; body: { code?: string; message?: string; error?: unknown } },
  job: string,
) {
  assert.equal(res.status, 409, res.text);
  assert.equal(res.body.code, 'schedule_is_code');
  assert.deepEqual(res.body.error, { key: 'schedule_is_code' }, "Bull Board's UI reads error.key");
  assert.ok(
    res.body.message?.includes(
      `the schedule of "${job}" is defined in its job file (${fileOf(job)}): change the schedule there; jobscope start/server applies it at start`,
    ),
    res.body.message,
  );
}

describe('Bull Board scheduler routes', () => {
  test('reading schedulers works for the admin and the viewer', async () => {
    for (const auth of [ADMIN, VIEWER]) {
      const all = await srv.request(`${BOARD}/job-schedulers`, { auth });
      assert.equal(all.status, 200, all.text);
      const byQueue = Object.fromEntries(
        (all.body.schedulers as { queueName: string; pattern?: string; every?: number }[]).map((s) => [s.queueName, s]),
      );
      assert.equal(byQueue.nightly.pattern, '0 0 3 * * *');
      assert.equal(byQueue.tick.every, 3_600_000);
      const one = await srv.request(`${BOARD}/job-schedulers?queueName=nightly`, { auth });
      assert.equal(one.status, 200, one.text);
      assert.deepEqual(
        one.body.schedulers.map((s: { id: string }) => s.id),
        ['nightly'],
      );
    }
  });

  test('editing a schedule is refused with 409 naming the job file; Redis fires what it did before', async () => {
    for (const job of ['nightly', 'tick']) {
      const before = await scheduler(job);
      for (const body of [{ pattern: '*/5 * * * * *' }, { every: 1000 }, { pattern: '0 0 4 * * *', tz: 'Asia/Shanghai', limit: 3 }]) {
        const res = await srv.request(`${BOARD}/queues/${job}/job-schedulers/${job}`, { method: 'PATCH', auth: ADMIN, json: body });
        assertScheduleIsCode(res, job);
      }
      assert.deepEqual(await scheduler(job), before);
    }
  });

  test('removing a schedule is refused with 409; the scheduler stays', async () => {
    const before = await scheduler('nightly');
    const res = await srv.request(`${BOARD}/queues/nightly/job-schedulers/nightly/remove`, { method: 'PUT', auth: ADMIN });
    assertScheduleIsCode(res, 'nightly');
    assert.deepEqual(await scheduler('nightly'), before);
    // An id that is no scheduler of the job is refused the same way (and nothing else is removed).
    const other = await srv.request(`${BOARD}/queues/nightly/job-schedulers/other/remove`, { method: 'PUT', auth: ADMIN });
    assertScheduleIsCode(other, 'nightly');
    assert.deepEqual(await scheduler('nightly'), before);
  });

  test('the read-only viewer is refused (403 forbidden, as the API) and changes nothing', async () => {
    const before = await scheduler('nightly');
    const edit = await srv.request(`${BOARD}/queues/nightly/job-schedulers/nightly`, {
      method: 'PATCH',
      auth: VIEWER,
      json: { pattern: '* * * * * *' },
    });
    assert.equal(edit.status, 403, edit.text);
    assert.equal(edit.body.code, 'forbidden');
    const remove = await srv.request(`${BOARD}/queues/nightly/job-schedulers/nightly/remove`, { method: 'PUT', auth: VIEWER });
    assert.equal(remove.status, 403, remove.text);
    assert.deepEqual(await scheduler('nightly'), before);
  });

  test('the run held for the next fire cannot be rescheduled, edited, reprioritised or promoted', async () => {
    const before = await nextFire('nightly');
    const schedule = await scheduler('nightly');
    assert.equal(before.state, 'delayed');
    const id = encodeURIComponent(before.id);
    const delay = await srv.request(`${BOARD}/queues/nightly/${id}/delay`, {
      method: 'PATCH',
      auth: ADMIN,
      json: { runAt: Date.now() + 1000 },
    });
    assertScheduleIsCode(delay, 'nightly');
    const data = await srv.request(`${BOARD}/queues/nightly/${id}/update-data`, { method: 'PATCH', auth: ADMIN, json: { jobData: {} } });
    assertScheduleIsCode(data, 'nightly');
    const priority = await srv.request(`${BOARD}/queues/nightly/${id}/priority`, { method: 'PATCH', auth: ADMIN, json: { priority: 1 } });
    assertScheduleIsCode(priority, 'nightly');
    const promote = await srv.request(`${BOARD}/queues/nightly/${id}/promote`, { method: 'PUT', auth: ADMIN });
    assertScheduleIsCode(promote, 'nightly');
    assert.match(promote.body.message, /use Run now on the jobscope Jobs page/);
    assert.deepEqual(await nextFire('nightly'), before);
    assert.deepEqual(await scheduler('nightly'), schedule);
  });

  test('promote all promotes the other delayed runs and leaves the next fire where it is', async () => {
    const before = await nextFire('nightly');
    const schedule = await scheduler('nightly');
    // Another delayed run, added beside the next fire in BullMQ's queue.
    const queue = fx.queue('nightly');
    const later = await queue.add('manual', {}, { delay: 60_000 });
    const res = await srv.request(`${BOARD}/queues/nightly/promote`, { method: 'PUT', auth: ADMIN });
    assert.equal(res.status, 200, res.text);
    assert.equal(await queue.getJobState(later.id!), 'waiting');
    assert.deepEqual(await nextFire('nightly'), before);
    assert.deepEqual(await scheduler('nightly'), schedule);
    await later.remove();
  });

  test('"Run now" of a scheduler is a manual run through jobscope (overlap rules included); the schedule is untouched', async () => {
    const before = await scheduler('nightly');
    const first = await srv.request(`${BOARD}/queues/nightly/job-schedulers/nightly/run`, { method: 'PUT', auth: ADMIN });
    assert.equal(first.status, 200, first.text);
    const runId = `nightly:${first.body.job.id}`;
    const report = await fx.run(runId);
    assert.equal(report.trigger, 'manual');
    assert.equal(report.state, 'waiting');
    // overlap: 'skip' while that run waits: refused, as the API would.
    const second = await srv.request(`${BOARD}/queues/nightly/job-schedulers/nightly/run`, { method: 'PUT', auth: ADMIN });
    assert.equal(second.status, 409, second.text);
    assert.match(second.body.message, /overlap: 'skip'/);
    assert.equal((await fx.api.job('nightly')).counts.waiting, 1);
    assert.deepEqual(await scheduler('nightly'), before);
    const unknown = await srv.request(`${BOARD}/queues/nightly/job-schedulers/nope/run`, { method: 'PUT', auth: ADMIN });
    assert.equal(unknown.status, 404, unknown.text);
    await fx.client.cancel(runId);
  });
});
