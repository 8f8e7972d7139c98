// Workflows with several real `jobscope` processes on one Redis (issue 8): a sharding broadcast spread over two worker
// processes (distinct indexes, a failed shard retried alone, the results in index order), `shards: 'workers'` equal to the
// live worker processes, worker groups, and the `act` claim a verifying service sees for an API trigger, a schedule and a
// child run. The timeline service records each request and checks its token (test/helpers/cluster.ts).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Cluster, waitFor, type JobscopeProcess } from './helpers/cluster.ts';

const shardJob = (shards: string) => `import { post, sleep } from './_timeline.ts';
export default {
  token: { audience: ['rec'] },
  shards: ${shards},
  concurrency: 4,
  // At most 2 at once per process: 4 shards at once must use both workers (with 4 per process, one worker could take all).
  concurrencyPerWorker: 2,
  attempts: 2,
  async run(ctx) {
    await post(ctx, 'start');
    await sleep(ctx, 400);
    // Shard 1 fails its first attempt once, in whichever process runs it.
    if (ctx.shard.index === 1 && ctx.run.attempt === 1 && ctx.data.failOne) throw new Error('shard 1 fails once');
    await post(ctx, 'end');
    return { index: ctx.shard.index, total: ctx.shard.total, pid: process.pid, attempt: ctx.run.attempt };
  },
};
`;

let cluster: Cluster;
let server: JobscopeProcess;
let workers: JobscopeProcess[];
let reporter: JobscopeProcess;

before(async () => {
  cluster = await Cluster.start({
    prefix: 'cw',
    jobs: {
      'split.ts': shardJob('4'),
      'broadcast.ts': shardJob("'workers'"),
      'report.ts': `import { post } from './_timeline.ts';
export default { token: { audience: ['rec'] }, group: 'reports', async run(ctx) { await post(ctx, 'start'); return { pid: process.pid }; } };
`,
      'parent.ts': `import { post } from './_timeline.ts';
export default { token: { audience: ['rec'] }, async run(ctx) { await post(ctx, 'start'); return ctx.triggerAndWait('child'); } };
`,
      'child.ts': `import { post } from './_timeline.ts';
export default { token: { audience: ['rec'] }, async run(ctx) { await post(ctx, 'start'); return 'child done'; } };
`,
      'tick.ts': `import { post } from './_timeline.ts';
export default { token: { audience: ['rec'] }, schedule: { every: '1s' }, async run(ctx) { await post(ctx, 'start'); } };
`,
    },
  });
  workers = await Promise.all([cluster.spawn('worker'), cluster.spawn('worker')]);
  reporter = await cluster.spawn('worker', { args: ['--group', 'reports'], name: 'reporter' });
  server = await cluster.spawn('server');
});

after(async () => {
  await cluster?.close();
});

const claimsOf = (token: string | undefined) =>
  JSON.parse(Buffer.from((token ?? '').split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;

describe('sharding across processes', () => {
  test('shards: 4 over two workers: distinct indexes, shard 1 retried alone, results in index order', async () => {
    const res = await cluster.trigger(server, 'split', { failOne: true });
    assert.equal(res.status, 202, res.text);
    const parent = await cluster.finished(server, res.body.runId, 30_000);
    assert.equal(parent.outcome, 'completed', JSON.stringify(parent));
    const results = parent.result as { index: number; total: number; pid: number; attempt: number }[];
    assert.deepEqual(
      results.map((r) => r.index),
      [0, 1, 2, 3],
    );
    assert.ok(results.every((r) => r.total === 4));
    assert.deepEqual(
      results.map((r) => r.attempt),
      [1, 2, 1, 1],
      'only shard 1 ran twice',
    );
    const workerPids = new Set(workers.map((w) => w.pid));
    const pids = new Set(results.map((r) => r.pid));
    assert.ok(
      [...pids].every((p) => workerPids.has(p)),
      'shards ran in the worker processes',
    );
    assert.equal(pids.size, 2, `the shards were spread over both workers (${[...pids].join(', ')})`);
    const starts = cluster.timeline.of({ kind: 'start' }).filter((e) => e.run.startsWith('split:'));
    assert.equal(new Set(starts.map((e) => e.jti)).size, starts.length, 'each shard attempt had its own token');
    assert.ok(
      starts.every((e) => e.accepted),
      'every shard token was accepted',
    );
  });

  test("shards: 'workers' runs one shard per live worker process serving the job", async () => {
    const res = await cluster.trigger(server, 'broadcast', {});
    const parent = await cluster.finished(server, res.body.runId, 30_000);
    assert.equal(parent.outcome, 'completed', JSON.stringify(parent));
    // Two workers serve it; the reports worker does not (it serves its group only).
    assert.equal((parent.result as unknown[]).length, 2);
    const workersApi = await cluster.api(server, '/api/workers');
    assert.equal(workersApi.status, 200);
  });
});

describe('worker groups across processes', () => {
  test('a grouped job runs only on the worker started with its group', async () => {
    const runs = await Promise.all([1, 2, 3].map(() => cluster.trigger(server, 'report', {})));
    for (const r of runs) {
      const done = await cluster.finished(server, r.body.runId);
      assert.equal((done.result as { pid: number }).pid, reporter.pid);
    }
  });
});

describe('who triggered, as a verifying service sees it', () => {
  test('act: the API user, the parent run for a child, nothing for a schedule', async () => {
    const res = await cluster.trigger(server, 'parent', {});
    const parent = await cluster.finished(server, res.body.runId);
    assert.equal(parent.outcome, 'completed', JSON.stringify(parent));
    assert.equal(parent.result, 'child done');
    assert.equal(parent.triggeredBy, 'user:admin');
    const [childId] = parent.children as string[];
    const [parentCall] = cluster.timeline.of({ run: res.body.runId, kind: 'start' });
    const [childCall] = cluster.timeline.of({ run: childId, kind: 'start' });
    assert.ok(parentCall.accepted && childCall.accepted);
    assert.deepEqual(claimsOf(parentCall.token).act, { sub: 'user:admin' });
    assert.deepEqual(claimsOf(childCall.token).act, { sub: 'job:parent', run: res.body.runId });
    const tick = await waitFor(
      () => cluster.timeline.of({ kind: 'start' }).find((e) => e.run.startsWith('tick:')),
      10_000,
      'a scheduled tick',
    );
    assert.equal(claimsOf(tick.token).act, undefined, 'a scheduled run acts for itself');
    assert.equal(tick.trigger, 'schedule');
  });
});
