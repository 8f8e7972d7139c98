// Scheduler sync against a real Redis: the schedulers in Redis always equal the schedules in jobs/.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';

const tick = `export default { token: { audience: ['svc'] }, schedule: { every: '1s' }, async run(ctx) { return { trigger: ctx.run.trigger, sub: ctx.token.claims.sub }; } };`;
const cron = `export default { token: { audience: ['svc'] }, schedule: { cron: '0 0 3 * * *', tz: 'Europe/Paris' }, async run() {} };`;
const manual = `export default { token: { audience: ['svc'] }, async run() {} };`;

let redis: TestRedis;
/** One process per fixture, each with its own jobs folder, all on one Redis. */
const processes: Fixture[] = [];
const env = { JOBSCOPE_PREFIX: 'sch' };
/** The first test's first process (with a server): the later tests run its workers and read through it. */
let first: Fixture;

async function open(files: Record<string, string>, server = false): Promise<Fixture> {
  const fx = await jobscopeFixture({ jobs: files, redisServer: redis, env, server });
  processes.push(fx);
  return fx;
}

/** The schedulers in Redis (BullMQ's entries, read on the test's own connection). */
async function schedulerIds(fx: Fixture, names: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const name of names) {
    for (const s of await fx.queue(name).getJobSchedulers(0, -1)) ids.push(`${name}/${s.key}`);
  }
  return ids.sort();
}

before(async () => {
  redis = await startRedis();
});
after(async () => {
  await Promise.all(processes.map((fx) => fx.close()));
  await redis.destroy();
});

describe('scheduler sync', () => {
  test('processes starting at once do not double a schedule; an unchanged one is left alone', async () => {
    const files = { 'tick.ts': tick, 'nightly.ts': cron, 'manual.ts': manual };
    const [a, b, c] = await Promise.all([open(files, true), open(files), open(files)]);
    first = a;
    const reports = await Promise.all([a.runtime.syncSchedules(), b.runtime.syncSchedules(), c.runtime.syncSchedules()]);
    assert.deepEqual(await schedulerIds(a, ['tick', 'nightly', 'manual']), ['nightly/nightly', 'tick/tick']);
    const upserts = reports.flatMap((r) => r.upserted);
    assert.deepEqual(upserts.sort(), ['nightly', 'tick'], 'each schedule was written once; the later processes found it unchanged');
    const next = (await a.api.job('nightly')) as { nextRuns: string[] };
    assert.equal(next.nextRuns.length, 5);
    assert.match(next.nextRuns[0], /T02:00:00\.000Z$/, '03:00 in Paris (winter) is 02:00 UTC');
  });

  test('scheduled runs fire, with trigger "schedule" and their own token', async () => {
    const fx = first;
    await fx.runtime.startWorkers(['tick']);
    await until(async () => (await fx.api.job('tick')).counts.completed >= 2, 8000, 'two scheduled runs');
    const [done] = (await fx.api.get('/api/runs?job=tick&state=completed&limit=1')).body.runs as { runId: string }[];
    assert.deepEqual((await fx.run(done.runId)).result, { trigger: 'schedule', sub: 'job:tick' });
  });

  test('a schedule removed from a job, or a deleted job file, removes its scheduler', async () => {
    const fx = await open({ 'tick.ts': manual, 'manual.ts': manual });
    const report = await fx.runtime.syncSchedules();
    assert.deepEqual(report.removed.sort(), ['nightly', 'tick']);
    assert.deepEqual(await schedulerIds(first, ['tick', 'nightly']), []);
  });

  test('pause stops schedule and queue and survives a restart; resume brings both back', async () => {
    const fx = await open({ 'tick.ts': tick });
    await fx.runtime.syncSchedules();
    assert.deepEqual(await schedulerIds(fx, ['tick']), ['tick/tick']);
    await fx.runtime.pause('tick');
    // BullMQ's own paused flag of the queue.
    assert.equal(await fx.queue('tick').isPaused(), true);
    assert.deepEqual(await schedulerIds(fx, ['tick']), []);
    // A process starting later must not bring the paused schedule back.
    const restarted = await open({ 'tick.ts': tick }, true);
    await restarted.runtime.syncSchedules();
    assert.deepEqual(await schedulerIds(restarted, ['tick']), []);
    assert.equal((await restarted.api.job('tick')).paused, true);
    await restarted.runtime.resume('tick');
    assert.equal(await fx.queue('tick').isPaused(), false);
    assert.deepEqual(await schedulerIds(fx, ['tick']), ['tick/tick']);
  });
});
