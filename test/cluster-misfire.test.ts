// Misfire policy across a full stop of the cluster (issue 7): every process is stopped for several periods of an `every: 2s`
// schedule, then started again. misfire 'skip' (the default) records the stale fire as a misfire without running it;
// misfire 'once' runs it once with trigger 'misfire'; a schedule removed from its job file while everything was down never
// fires again, not even the fire that came due during the downtime. Real `jobscope start` processes, real timeline service.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Cluster, sleep, waitFor, type Execution, type JobscopeProcess } from './helpers/cluster.ts';

const GRACE_MS = 5000; // misfireGrace's default
const DOWNTIME_MS = 8000; // four periods

const scheduled = (extra: string) => `import { post, sleep } from './_timeline.ts';
export default {
  token: { audience: ['rec'] },
  ${extra}
  async run(ctx) {
    await post(ctx, 'start');
    await sleep(ctx, 100);
    await post(ctx, 'end');
    return { ran: ctx.run.id };
  },
};
`;

let cluster: Cluster;
let first: JobscopeProcess;
let second: JobscopeProcess;
let stopAt = 0;
let restartAt = 0;

/** When a scheduler-made run was due: the millis that end its id (`<job>:repeat:<scheduler>:<millis>`), if it has them. */
function dueOf(runId: string): number | undefined {
  const m = /:(\d{12,})$/.exec(runId);
  return m ? Number(m[1]) : undefined;
}

const executionsOf = (job: string) => cluster.timeline.executions((e) => e.run.startsWith(`${job}:`));
const afterRestart = (xs: Execution[]) => xs.filter((x) => x.start.at >= restartAt);
const describeJob = (job: string) =>
  `stop at +0, restart at +${restartAt - stopAt} ms\n` +
  executionsOf(job)
    .map(
      (x) =>
        `start +${x.start.at - stopAt} ms ${x.run} (due ${dueOf(x.run) ? `+${dueOf(x.run)! - stopAt} ms` : '?'}) trigger=${x.start.trigger}`,
    )
    .join('\n');

before(async () => {
  cluster = await Cluster.start({
    prefix: 'mf',
    jobs: {
      'ms-skip.ts': scheduled("schedule: { every: '2s' },"), // misfire: 'skip' is the default
      'ms-once.ts': scheduled("schedule: { every: '2s' }, misfire: 'once',"),
      // 'once', so that a fire of this schedule that survived its removal would show up as a run.
      'ms-removed.ts': scheduled("schedule: { every: '2s' }, misfire: 'once',"),
    },
  });
  first = await cluster.spawn('start');
  // Each schedule fires at least twice while the runner is up.
  await waitFor(
    () => ['ms-skip', 'ms-once', 'ms-removed'].every((job) => executionsOf(job).filter((x) => x.end).length >= 2),
    12_000,
    'two fires of every schedule',
  );
  stopAt = Date.now();
  first.signal('SIGTERM');
  const { code } = await first.waitExit(15_000);
  assert.equal(code, 0, first.tail());
  await sleep(DOWNTIME_MS);
  // The schedule is removed from the code while everything is down.
  cluster.writeJob('ms-removed.ts', scheduled("misfire: 'once',"));
  restartAt = Date.now();
  second = await cluster.spawn('start');
  // Observe the restarted runner for three periods after the first normal fires.
  await waitFor(
    () => ['ms-skip', 'ms-once'].every((job) => afterRestart(executionsOf(job)).some((x) => x.start.trigger === 'schedule' && x.end)),
    12_000,
    'a normal fire of ms-skip and ms-once after the restart',
  ).catch(() => undefined); // asserted below, with the timeline in the message
  await sleep(3000);
  await cluster.timeline.settled();
});

after(async () => {
  await cluster?.close();
});

describe('misfire after every process was stopped for several periods', () => {
  test('before the stop, every schedule fired twice as normal scheduled runs', (t) => {
    for (const job of ['ms-skip', 'ms-once', 'ms-removed']) t.diagnostic(`${job}:\n${describeJob(job)}`);
    for (const job of ['ms-skip', 'ms-once', 'ms-removed']) {
      const before = executionsOf(job).filter((x) => x.start.at < stopAt);
      assert.ok(before.length >= 2, describeJob(job));
      assert.ok(
        before.every((x) => x.start.trigger === 'schedule'),
        describeJob(job),
      );
    }
  });

  test("misfire 'skip' (default): the stale fire is not executed but recorded with outcome 'misfire'; normal fires continue", async () => {
    const after = afterRestart(executionsOf('ms-skip'));
    const stale = after.filter(
      (x) => x.start.trigger === 'misfire' || (dueOf(x.run) !== undefined && dueOf(x.run)! < restartAt - GRACE_MS),
    );
    assert.deepEqual(
      stale.map((x) => x.run),
      [],
      `a stale fire ran:\n${describeJob('ms-skip')}`,
    );
    assert.ok(
      after.some((x) => x.start.trigger === 'schedule' && x.end),
      `no normal fire after the restart:\n${describeJob('ms-skip')}`,
    );

    const runs = await cluster.api(second, '/api/jobs/ms-skip/runs?limit=100');
    assert.equal(runs.status, 200, runs.text);
    const misfires = (runs.body as { runId: string; outcome?: string }[]).filter((r) => r.outcome === 'misfire');
    assert.equal(
      misfires.length,
      1,
      `runs: ${JSON.stringify((runs.body as { runId: string; outcome?: string }[]).map((r) => [r.runId, r.outcome]))}`,
    );
    const report = await cluster.run(second, misfires[0].runId);
    assert.equal(report.status, 200, report.text);
    assert.equal(report.body.outcome, 'misfire', report.text);
    const due = dueOf(misfires[0].runId);
    if (due !== undefined) assert.ok(due > stopAt - 2000 && due < restartAt, `the misfire was due at +${due - stopAt} ms`);
    assert.deepEqual(cluster.timeline.of({ run: misfires[0].runId }), [], 'the misfire recorded as such was executed');
  });

  test("misfire 'once': exactly one run with trigger 'misfire' for the missed period, then normal fires", () => {
    const after = afterRestart(executionsOf('ms-once'));
    const misfires = after.filter((x) => x.start.trigger === 'misfire');
    assert.equal(misfires.length, 1, describeJob('ms-once'));
    assert.ok(misfires[0].end, 'the misfire run finished');
    // Apart from that one run, no stale fire ran.
    const staleScheduled = after.filter(
      (x) => x.start.trigger !== 'misfire' && dueOf(x.run) !== undefined && dueOf(x.run)! < restartAt - GRACE_MS,
    );
    assert.deepEqual(
      staleScheduled.map((x) => x.run),
      [],
      describeJob('ms-once'),
    );
    const normal = after.filter((x) => x.start.trigger === 'schedule' && x.start.seq > misfires[0].start.seq);
    assert.ok(normal.length >= 1, `no normal fire after the misfire run:\n${describeJob('ms-once')}`);
    assert.ok(
      executionsOf('ms-once').every((x) => x.start.at >= restartAt || x.start.trigger === 'schedule'),
      describeJob('ms-once'),
    );
  });

  test('a schedule removed from its job file while everything was down fires 0 times after the restart', async () => {
    assert.deepEqual(
      afterRestart(executionsOf('ms-removed')).map((x) => `${x.run} ${x.start.trigger}`),
      [],
      describeJob('ms-removed'),
    );
    const job = await cluster.api(second, '/api/jobs/ms-removed');
    assert.equal(job.status, 200, job.text);
    assert.equal(job.body.schedule, null, job.text);
    assert.deepEqual(job.body.nextRuns, [], job.text);
  });
});
