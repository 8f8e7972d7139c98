// The dispatcher (src/runtime/dispatch.ts): a worker process holds the same few Redis connections whatever the number of
// jobs it serves, idle or with runs of 100 different jobs active at once, and every run still completes once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { Runtime } from '../src/runtime/runtime.ts';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';

const JOBS = 300;
const AT_ONCE = 100;
const names = Array.from({ length: JOBS }, (_, i) => `job-${String(i).padStart(3, '0')}`);

let fx: Fixture;
let runtime: Runtime;
let probe: Redis;

before(async () => {
  fx = await jobscopeFixture({
    jobs: Object.fromEntries(
      names.map((name) => [
        `${name}.ts`,
        `export default { token: { audience: ['svc'] }, async run(ctx) {
          await new Promise((resolve) => setTimeout(resolve, 3000));
          return ctx.run.id;
        } };`,
      ]),
    ),
    env: { JOBSCOPE_PREFIX: 'dp' },
  });
  ({ runtime } = fx);
  // The test's own connection counts the others.
  probe = fx.redis;
  // The client that triggers and reads the runs opens its connection now, before anything is counted.
  await fx.client.run('job-000:0').catch(() => undefined);
});
after(async () => {
  await fx?.close();
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

    const runs = await Promise.all(names.slice(0, AT_ONCE).map(async (name) => ({ runId: await fx.trigger(name) })));
    await until(() => runtime.executor!.activeRuns().length === AT_ONCE, 15_000, `${AT_ONCE} runs active at once`);
    const busy = (await connections()) - controlPlane;
    assert.ok(busy <= 16, `${busy} connections with ${AT_ONCE} different jobs running`);
    assert.equal(busy, idle, 'running jobs opens no connection');

    const reports = await Promise.all(runs.map((r) => fx.wait(r.runId, 30_000)));
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
