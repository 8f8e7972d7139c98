// The dispatcher (src/runtime/dispatch.ts): a worker process holds the same few Redis connections whatever the number of
// jobs it serves, idle or with runs of 100 different jobs active at once, and every run still completes once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { Runtime } from '../src/runtime/runtime.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { jobsDir, removeDir, testRuntime } from './helpers/runtime.ts';
import { until, waitForRun } from './helpers/wait.ts';

const JOBS = 300;
const AT_ONCE = 100;
const names = Array.from({ length: JOBS }, (_, i) => `job-${String(i).padStart(3, '0')}`);

let redis: TestRedis;
let dir: string;
let runtime: Runtime;
let probe: Redis;

before(async () => {
  redis = await startRedis();
  dir = jobsDir(
    Object.fromEntries(
      names.map((name) => [
        `${name}.ts`,
        `export default { token: { audience: ['svc'] }, async run(ctx) {
          await new Promise((resolve) => setTimeout(resolve, 3000));
          return ctx.run.id;
        } };`,
      ]),
    ),
  );
  ({ runtime } = await testRuntime({ redisUrl: redis.url, jobsDir: dir, env: { JOBSCOPE_PREFIX: 'dp' } }));
  probe = new Redis(redis.url);
});
after(async () => {
  probe?.disconnect();
  await runtime?.close();
  await redis?.destroy();
  if (dir) removeDir(dir);
});

/** Connections to the private Redis, the probe's own left out. */
async function connections(): Promise<number> {
  const list = (await probe.client('LIST')) as string;
  return list.trim().split('\n').length - 1;
}

describe('the dispatcher', () => {
  test(`a process serving ${JOBS} jobs holds a few connections, idle and with ${AT_ONCE} different jobs running`, async () => {
    const controlPlane = await connections();
    await runtime.startWorkers();
    const idle = (await connections()) - controlPlane;
    assert.ok(idle <= 16, `${idle} connections for the workers of ${JOBS} jobs (BullMQ's own loop: one per job)`);

    const runs = await Promise.all(names.slice(0, AT_ONCE).map((name) => runtime.queues.enqueue(name, {})));
    await until(() => runtime.executor!.activeRuns().length === AT_ONCE, 15_000, `${AT_ONCE} runs active at once`);
    const busy = (await connections()) - controlPlane;
    assert.ok(busy <= 16, `${busy} connections with ${AT_ONCE} different jobs running`);
    assert.equal(busy, idle, 'running jobs opens no connection');

    const reports = await Promise.all(runs.map((r) => waitForRun(runtime, r.runId, 30_000)));
    assert.deepEqual(
      reports.map((r) => r.state),
      runs.map(() => 'completed'),
    );
    assert.deepEqual(
      reports.map((r) => r.result),
      runs.map((r) => r.runId),
    );
  });
});
