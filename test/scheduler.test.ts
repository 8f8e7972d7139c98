// Scheduler sync against a real Redis: the schedulers in Redis always equal the schedules in jobs/.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Runtime } from '../src/runtime/runtime.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { jobsDir, removeDir, testRuntime } from './helpers/runtime.ts';
import { until } from './helpers/wait.ts';

const tick = `export default { token: { audience: ['svc'] }, schedule: { every: '1s' }, async run(ctx) { return { trigger: ctx.run.trigger, sub: ctx.token.claims.sub }; } };`;
const cron = `export default { token: { audience: ['svc'] }, schedule: { cron: '0 0 3 * * *', tz: 'Europe/Paris' }, async run() {} };`;
const manual = `export default { token: { audience: ['svc'] }, async run() {} };`;

let redis: TestRedis;
const dirs: string[] = [];
const runtimes: Runtime[] = [];
const env = { JOBSCOPE_PREFIX: 'sch' };

async function open(files: Record<string, string>): Promise<Runtime> {
  const dir = jobsDir(files);
  dirs.push(dir);
  const { runtime } = await testRuntime({ redisUrl: redis.url, jobsDir: dir, env });
  runtimes.push(runtime);
  return runtime;
}

async function schedulerIds(runtime: Runtime, names: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const name of names) {
    for (const s of await runtime.queues.queue(name).getJobSchedulers(0, -1)) ids.push(`${name}/${s.key}`);
  }
  return ids.sort();
}

before(async () => {
  redis = await startRedis();
});
after(async () => {
  await Promise.all(runtimes.map((r) => r.close()));
  await redis.destroy();
  dirs.forEach(removeDir);
});

describe('scheduler sync', () => {
  test('processes starting at once do not double a schedule; an unchanged one is left alone', async () => {
    const files = { 'tick.ts': tick, 'nightly.ts': cron, 'manual.ts': manual };
    const [a, b, c] = await Promise.all([open(files), open(files), open(files)]);
    const reports = await Promise.all([a.syncSchedules(), b.syncSchedules(), c.syncSchedules()]);
    assert.deepEqual(await schedulerIds(a, ['tick', 'nightly', 'manual']), ['nightly/nightly', 'tick/tick']);
    const upserts = reports.flatMap((r) => r.upserted);
    assert.deepEqual(upserts.sort(), ['nightly', 'tick'], 'each schedule was written once; the later processes found it unchanged');
    const next = await a.queues.summary('nightly');
    assert.equal(next.nextRuns.length, 5);
    assert.match(next.nextRuns[0], /T02:00:00\.000Z$/, '03:00 in Paris (winter) is 02:00 UTC');
  });

  test('scheduled runs fire, with trigger "schedule" and their own token', async () => {
    const runtime = runtimes[0];
    await runtime.startWorkers(['tick']);
    await until(async () => (await runtime.queues.queue('tick').getCompletedCount()) >= 2, 8000, 'two scheduled runs');
    const [done] = await runtime.queues.queue('tick').getCompleted(0, 0);
    assert.deepEqual(done.returnvalue, { trigger: 'schedule', sub: 'job:tick' });
  });

  test('a schedule removed from a job, or a deleted job file, removes its scheduler', async () => {
    const runtime = await open({ 'tick.ts': manual, 'manual.ts': manual });
    const report = await runtime.syncSchedules();
    assert.deepEqual(report.removed.sort(), ['nightly', 'tick']);
    assert.deepEqual(await schedulerIds(runtimes[0], ['tick', 'nightly']), []);
  });

  test('pause stops schedule and queue and survives a restart; resume brings both back', async () => {
    const runtime = await open({ 'tick.ts': tick });
    await runtime.syncSchedules();
    assert.deepEqual(await schedulerIds(runtime, ['tick']), ['tick/tick']);
    await runtime.pause('tick');
    assert.equal(await runtime.queues.queue('tick').isPaused(), true);
    assert.deepEqual(await schedulerIds(runtime, ['tick']), []);
    // A process starting later must not bring the paused schedule back.
    const restarted = await open({ 'tick.ts': tick });
    await restarted.syncSchedules();
    assert.deepEqual(await schedulerIds(restarted, ['tick']), []);
    assert.equal((await restarted.queues.summary('tick')).paused, true);
    await restarted.resume('tick');
    assert.equal(await runtime.queues.queue('tick').isPaused(), false);
    assert.deepEqual(await schedulerIds(runtime, ['tick']), ['tick/tick']);
  });
});
