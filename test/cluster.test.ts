// Cluster-wide execution guarantees with several real `jobscope` processes on one Redis (issue 7): concurrency counted across
// every worker, overlap 'skip' atomic across servers, and skip/replace while a run waits for its retry. What ran when is
// recorded by a real HTTP service the jobs call with their run token (test/helpers/cluster.ts).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Cluster, sleep, timedJob, waitFor, type JobscopeProcess } from './helpers/cluster.ts';

const retryJob = (overlap: 'skip' | 'replace') => `import { post, sleep } from './_timeline.ts';
export default {
  token: { audience: ['rec'] },
  overlap: '${overlap}',
  attempts: 2,
  backoff: { type: 'fixed', delay: 3000 },
  async run(ctx) {
    await post(ctx, 'start');
    if (ctx.data.fail && ctx.run.attempt === 1) throw new Error('the first attempt fails');
    await sleep(ctx, 300);
    await post(ctx, 'end');
    return { ran: ctx.run.id };
  },
};
`;

let cluster: Cluster;
let servers: JobscopeProcess[];
let workers: JobscopeProcess[];

before(async () => {
  cluster = await Cluster.start({
    prefix: 'cl',
    jobs: {
      'probe.ts': timedJob(200),
      'serial.ts': timedJob(300),
      'triple.ts': timedJob(400, 'concurrency: 3,'),
      'only-one.ts': timedJob(2500, "overlap: 'skip',"),
      'retry-skip.ts': retryJob('skip'),
      'retry-replace.ts': retryJob('replace'),
    },
  });
  workers = await Promise.all([cluster.spawn('worker'), cluster.spawn('worker'), cluster.spawn('worker')]);
  servers = await Promise.all([cluster.spawn('server'), cluster.spawn('server')]);
});

after(async () => {
  await cluster?.close();
});

/** Triggers `n` runs of `job` at once, alternating between the two servers; returns the run ids (all must be 202). */
async function triggerMany(job: string, n: number): Promise<string[]> {
  const answers = await Promise.all(Array.from({ length: n }, (_, i) => cluster.trigger(servers[i % 2], job)));
  for (const a of answers) assert.equal(a.status, 202, a.text);
  return answers.map((a) => String(a.body.runId));
}

const ofJob = (job: string) => (e: { run: string }) => e.run.startsWith(`${job}:`);

function pidsOf(job: string): string {
  const counts = new Map<number, number>();
  for (const x of cluster.timeline.executions(ofJob(job))) counts.set(x.pid, (counts.get(x.pid) ?? 0) + 1);
  return [...counts].map(([pid, n]) => `${pid}:${n}`).join(' ');
}

describe('the fixture', () => {
  test('a run on a worker process calls the timeline with a token that is accepted while it runs and revoked after', async () => {
    const [runId] = await triggerMany('probe', 1);
    const report = await cluster.finished(servers[0], runId);
    assert.equal(report.state, 'completed', JSON.stringify(report));
    await cluster.timeline.settled();
    const events = cluster.timeline.of({ run: runId });
    assert.deepEqual(
      events.map((e) => [e.kind, e.accepted, e.attempt]),
      [
        ['start', true, 1],
        ['end', true, 1],
      ],
    );
    assert.ok(
      workers.some((w) => w.pid === events[0].pid),
      'the run executed in one of the worker processes',
    );
    assert.deepEqual(await cluster.timeline.verify(events[0].token!), { accepted: false, code: 'revoked' });
  });
});

describe('concurrency is cluster-wide', () => {
  test('concurrency 1 (the default): 8 runs of 300 ms on 3 workers never overlap', async (t) => {
    const runIds = await triggerMany('serial', 8);
    for (const runId of runIds) assert.equal((await cluster.finished(servers[0], runId, 30_000)).state, 'completed');
    await cluster.timeline.settled();
    const xs = cluster.timeline.executions(ofJob('serial'));
    assert.equal(xs.length, 8, cluster.timeline.describe(ofJob('serial')));
    assert.ok(
      xs.every((x) => x.end),
      'every execution ended',
    );
    assert.equal(cluster.timeline.maxConcurrent(ofJob('serial')), 1, `runs overlapped:\n${cluster.timeline.describe(ofJob('serial'))}`);
    t.diagnostic(`serial executions per worker pid: ${pidsOf('serial')}`);
  });

  test('concurrency 3: 12 runs of 400 ms on 3 workers: never more than 3 at once, and more than 1 at some moment', async (t) => {
    const runIds = await triggerMany('triple', 12);
    for (const runId of runIds) assert.equal((await cluster.finished(servers[1], runId, 30_000)).state, 'completed');
    await cluster.timeline.settled();
    assert.equal(cluster.timeline.executions(ofJob('triple')).length, 12);
    const max = cluster.timeline.maxConcurrent(ofJob('triple'));
    assert.ok(max <= 3, `${max} runs at once:\n${cluster.timeline.describe(ofJob('triple'))}`);
    assert.ok(max >= 2, `never more than one run at once (max ${max}): concurrency 3 is not used`);
    t.diagnostic(`triple: max ${max} at once; executions per worker pid: ${pidsOf('triple')}`);
  });
});

describe("overlap: 'skip' is atomic across servers", () => {
  test('30 concurrent triggers against 2 servers: one 202, 29 x 409 naming the blocking run, one execution', async () => {
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => cluster.trigger(servers[i % 2], 'only-one')));
    const accepted = answers.filter((a) => a.status === 202);
    const refused = answers.filter((a) => a.status === 409);
    assert.equal(accepted.length, 1, `statuses: ${answers.map((a) => a.status).join(',')}`);
    assert.equal(refused.length, 29, `statuses: ${answers.map((a) => a.status).join(',')}`);
    const runId = String(accepted[0].body.runId);
    for (const r of refused) {
      assert.equal(typeof r.body?.message, 'string', r.text);
      assert.ok(r.body.message.includes(runId), `409 message does not name the blocking run ${runId}: ${r.text}`);
      if (r.body.blocking !== undefined) assert.equal(r.body.blocking, runId);
    }
    assert.equal((await cluster.finished(servers[0], runId)).state, 'completed');
    await sleep(500); // a second run, had one been queued, would start now
    await cluster.timeline.settled();
    assert.deepEqual(
      cluster.timeline.executions(ofJob('only-one')).map((x) => x.run),
      [runId],
      cluster.timeline.describe(ofJob('only-one')),
    );
  });
});

describe('skip and replace while the first run waits for its retry', () => {
  /** Triggers a run whose first attempt fails, and waits until it is delayed for its retry (3 s backoff). */
  async function failingRun(job: string): Promise<{ runId: string; failedAt: number }> {
    const first = await cluster.trigger(servers[0], job, { fail: true });
    assert.equal(first.status, 202, first.text);
    const runId = String(first.body.runId);
    await waitFor(() => cluster.timeline.of({ run: runId, kind: 'start', attempt: 1 }).length > 0, 10_000, `${runId} attempt 1`);
    const failedAt = Date.now();
    await waitFor(async () => (await cluster.run(servers[0], runId)).body?.state === 'delayed', 2500, `${runId} to wait for its retry`, 50);
    return { runId, failedAt };
  }

  test('skip: a trigger while the run is delayed for its retry is refused (409 naming it); the retry then runs', async () => {
    const { runId } = await failingRun('retry-skip');
    const second = await cluster.trigger(servers[1], 'retry-skip');
    assert.equal(second.status, 409, `a trigger during the retry backoff was not refused: ${second.text}`);
    assert.ok(String(second.body?.message).includes(runId), second.text);
    const report = await cluster.finished(servers[0], runId, 15_000);
    assert.equal(report.state, 'completed', JSON.stringify(report));
    await cluster.timeline.settled();
    assert.deepEqual(
      cluster.timeline.of({ run: runId }).map((e) => [e.kind, e.attempt]),
      [
        ['start', 1],
        ['start', 2],
        ['end', 2],
      ],
    );
    // Nothing blocks any more.
    const third = await cluster.trigger(servers[1], 'retry-skip');
    assert.equal(third.status, 202, third.text);
    assert.equal((await cluster.finished(servers[1], String(third.body.runId))).state, 'completed');
  });

  test('replace: a new trigger cancels the run waiting for its retry (no 2nd attempt) and runs', async () => {
    const { runId: oldRun, failedAt } = await failingRun('retry-replace');
    const second = await cluster.trigger(servers[1], 'retry-replace');
    assert.equal(second.status, 202, second.text);
    const newRun = String(second.body.runId);
    assert.notEqual(newRun, oldRun);
    assert.equal((await cluster.finished(servers[1], newRun)).state, 'completed');
    // Past the old run's retry time (3 s backoff after its failure) and a margin: its 2nd attempt would have started.
    await sleep(Math.max(0, failedAt + 3000 + 2000 - Date.now()));
    await cluster.timeline.settled();
    assert.deepEqual(
      cluster.timeline.of({ run: oldRun }).map((e) => [e.kind, e.attempt]),
      [['start', 1]],
      `the replaced run came back:\n${cluster.timeline.describe(ofJob('retry-replace'))}`,
    );
    assert.deepEqual(
      cluster.timeline.of({ run: newRun }).map((e) => [e.kind, e.attempt]),
      [
        ['start', 1],
        ['end', 1],
      ],
    );
    const old = await cluster.run(servers[0], oldRun);
    // Either removed, or kept as a cancelled run: never completed, never waiting for a retry.
    if (old.status !== 404) {
      assert.equal(old.status, 200, old.text);
      assert.equal(old.body.state, 'failed', old.text);
      assert.equal(old.body.outcome, 'cancelled', old.text);
    }
  });
});
