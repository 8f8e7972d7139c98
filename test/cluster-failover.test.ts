// One live execution per run across worker processes (issue 7): SIGTERM hands a run that outlives the shutdown deadline back
// to the queue (another worker completes it, no attempt consumed, no token left); a worker frozen past its lock (SIGSTOP)
// loses the run to another worker and, on waking, its execution is aborted and its token refused; after kill -9 the crashed
// execution's token is refused as soon as the run is re-run. Real `jobscope worker`/`server` processes on one Redis; what
// each execution did is recorded by a real timeline service that verifies every token with requireJobToken's verifier.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Cluster, sleep, waitFor, type JobscopeProcess, type TimelineEvent } from './helpers/cluster.ts';

/** Posts start, a tick every 300 ms for `ms` (refusals ignored: only ctx.signal stops it early), then end. */
const tickingJob = (ms: number) => `import { post, ticking } from './_timeline.ts';
export default {
  token: { audience: ['rec'] },
  async run(ctx) {
    await post(ctx, 'start');
    await ticking(ctx, ${ms});
    await post(ctx, 'end');
    return { ran: ctx.run.id, pid: process.pid };
  },
};
`;

let cluster: Cluster;
let server: JobscopeProcess;

before(async () => {
  cluster = await Cluster.start({
    prefix: 'fo',
    jobs: {
      'handback.ts': tickingJob(4000),
      'stalled.ts': tickingJob(8000),
      'crashed.ts': tickingJob(8000),
    },
  });
  server = await cluster.spawn('server');
});

after(async () => {
  await cluster?.close();
});

/** Two workers for one job (each test uses its own job, so runs left over by a failed test cannot interfere). */
async function twoWorkers(job: string, env: Record<string, string>): Promise<[JobscopeProcess, JobscopeProcess]> {
  const [a, b] = await Promise.all([
    cluster.spawn('worker', { env, args: ['--only', job], name: `${job}-worker-1` }),
    cluster.spawn('worker', { env, args: ['--only', job], name: `${job}-worker-2` }),
  ]);
  return [a, b];
}

/** Triggers a run and waits for its first execution: returns the run id, the executing worker and the other one. */
async function startOnOne(
  job: string,
  workers: JobscopeProcess[],
): Promise<{ runId: string; on: JobscopeProcess; other: JobscopeProcess }> {
  const answer = await cluster.trigger(server, job);
  assert.equal(answer.status, 202, answer.text);
  const runId = String(answer.body.runId);
  const start = await waitFor(() => cluster.timeline.of({ run: runId, kind: 'start' })[0], 15_000, `${runId} to start`);
  const on = workers.find((w) => w.pid === start.pid);
  assert.ok(on, `${runId} started in pid ${start.pid}, not one of the workers`);
  return { runId, on, other: workers.find((w) => w !== on)! };
}

const show = (runId: string) => cluster.timeline.describe((e) => e.run === runId);
const after_ = (events: TimelineEvent[], seq: number) => events.filter((e) => e.seq > seq);

describe('SIGTERM hands a run that outlives the shutdown deadline back to the queue', () => {
  test('the run completes on the other worker, no attempt consumed, no live token; the first token is revoked', async (t) => {
    const env = { JOBSCOPE_SHUTDOWN_TIMEOUT: '1s' };
    const workers = await twoWorkers('handback', env);
    try {
      const { runId, on: a, other: b } = await startOnOne('handback', workers);
      await waitFor(() => cluster.timeline.of({ run: runId, kind: 'tick', pid: a.pid }).length >= 2, 5000, 'two ticks from A');
      a.signal('SIGTERM');
      const exit = await a.waitExit(15_000);
      assert.equal(exit.code, 0, a.tail());
      const startOnB = await waitFor(
        () => cluster.timeline.of({ run: runId, kind: 'start', pid: b.pid })[0],
        15_000,
        `${runId} to start again on B`,
      ).catch((err: Error) => assert.fail(`${err.message}\n${show(runId)}\n${a.tail()}`));
      assert.equal(startOnB.attempt, 1, `the hand-back consumed an attempt:\n${show(runId)}`);
      const report = await cluster.finished(server, runId, 20_000);
      await cluster.timeline.settled();
      const handedBack = a.logs(/run handed back/);
      const handedBackAt = handedBack[0]?.receivedAt ?? startOnB.at;
      t.diagnostic(
        `A=${a.pid} B=${b.pid}, hand-back logged at +${handedBackAt - cluster.timeline.of({ run: runId })[0].at} ms\n${show(runId)}`,
      );

      assert.deepEqual(
        cluster.timeline.of({ run: runId, kind: 'end' }).map((e) => [e.pid, e.accepted]),
        [[b.pid, true]],
        show(runId),
      );
      assert.equal(report.state, 'completed', JSON.stringify(report));
      assert.equal(report.outcome, 'completed', JSON.stringify(report));
      assert.equal(report.attempts, 1, `attemptsMade after the successful run: ${report.attempts}`);
      assert.equal(handedBack.length, 1, `no 'run handed back' log line:\n${a.tail()}`);
      // A's execution: accepted while it ran, nothing accepted after the hand-back, its token now revoked.
      const fromA = cluster.timeline.of({ run: runId, pid: a.pid });
      assert.ok(fromA[0].accepted, show(runId));
      const lateFromA = fromA.filter((e) => e.at > handedBackAt || e.seq > startOnB.seq);
      assert.ok(
        lateFromA.every((e) => e.accepted === false && e.code === 'revoked'),
        show(runId),
      );
      assert.deepEqual(await cluster.timeline.verify(fromA[fromA.length - 1].token!), { accepted: false, code: 'revoked' });

      const tokens = await cluster.api(server, '/api/tokens');
      assert.equal(tokens.status, 200, tokens.text);
      assert.deepEqual(tokens.body, []);
      assert.deepEqual(await cluster.liveTokenKeys(), []);
    } finally {
      await Promise.all(workers.map((w) => w.kill()));
    }
  });
});

describe('a worker frozen past its lock (SIGSTOP) loses the run', () => {
  test('the other worker takes it over; the frozen execution is refused (revoked) and stops after SIGCONT; one completion', async (t) => {
    const workers = await twoWorkers('stalled', { JOBSCOPE_LOCK_DURATION: '2s' });
    let frozen: JobscopeProcess | undefined;
    try {
      const { runId, on: a, other: b } = await startOnOne('stalled', workers);
      await waitFor(() => cluster.timeline.of({ run: runId, kind: 'tick', pid: a.pid }).length >= 2, 5000, 'two ticks from A');
      const stoppedAt = Date.now();
      a.signal('SIGSTOP');
      frozen = a;
      const startOnB = await waitFor(
        () => cluster.timeline.of({ run: runId, kind: 'start', pid: b.pid })[0],
        15_000,
        `${runId} to be taken over by B while A is stopped`,
      ).catch((err: Error) => assert.fail(`${err.message}\n${show(runId)}\n${b.tail()}`));
      // A is still frozen, so only the new execution's start can have revoked A's token.
      const fromFrozen = cluster.timeline.of({ run: runId, pid: a.pid });
      assert.deepEqual(
        await cluster.timeline.verify(fromFrozen[fromFrozen.length - 1].token!),
        { accepted: false, code: 'revoked' },
        `A's token still verifies after B started the run:\n${show(runId)}`,
      );
      await waitFor(() => cluster.timeline.of({ run: runId, kind: 'tick', pid: b.pid }).length >= 1, 3000, 'a tick from B');
      await sleep(Math.max(1000, stoppedAt + 6000 - Date.now()));
      const continuedAt = Date.now();
      a.signal('SIGCONT');
      frozen = undefined;

      const report = await cluster.finished(server, runId, 25_000);
      await sleep(1000); // anything A still sends after B's completion
      await cluster.timeline.settled();
      const t0 = cluster.timeline.of({ run: runId })[0].at;
      t.diagnostic(`A=${a.pid} B=${b.pid}, SIGSTOP at +${stoppedAt - t0} ms, SIGCONT at +${continuedAt - t0} ms\n${show(runId)}`);

      // Every request of A's old execution made after B's execution started was refused as revoked.
      const lateFromA = after_(cluster.timeline.of({ run: runId, pid: a.pid }), startOnB.seq);
      assert.ok(
        lateFromA.every((e) => e.accepted === false && e.code === 'revoked'),
        `A's old execution was accepted after B took over:\n${show(runId)}`,
      );
      // A's old execution stops soon after it wakes.
      const stillTicking = cluster.timeline.of({ run: runId, pid: a.pid }).filter((e) => e.at > continuedAt + 2000);
      assert.deepEqual(
        stillTicking.map((e) => `${e.kind} #${e.seq}`),
        [],
        `A's old execution kept running after SIGCONT:\n${show(runId)}`,
      );
      // Completed once: one end, from B, accepted.
      assert.deepEqual(
        cluster.timeline.of({ run: runId, kind: 'end' }).map((e) => [e.pid, e.accepted]),
        [[b.pid, true]],
        show(runId),
      );
      assert.deepEqual(await cluster.timeline.verify(cluster.timeline.of({ run: runId, pid: a.pid })[0].token!), {
        accepted: false,
        code: 'revoked',
      });
      assert.equal(report.state, 'completed', JSON.stringify(report));
      assert.equal(report.outcome, 'completed', JSON.stringify(report));
    } finally {
      frozen?.signal('SIGCONT');
      await Promise.all(workers.map((w) => w.kill()));
    }
  });
});

describe('kill -9 mid-run', () => {
  test("the crashed execution's token is refused (revoked) as soon as the run is re-run on the other worker", async (t) => {
    const workers = await twoWorkers('crashed', { JOBSCOPE_LOCK_DURATION: '2s' });
    try {
      const { runId, on: a, other: b } = await startOnOne('crashed', workers);
      await waitFor(() => cluster.timeline.of({ run: runId, kind: 'tick', pid: a.pid }).length >= 2, 5000, 'two ticks from A');
      a.signal('SIGKILL');
      await a.waitExit(5000);
      await cluster.timeline.settled();
      const fromA = cluster.timeline.of({ run: runId, pid: a.pid });
      const last = fromA[fromA.length - 1];
      assert.ok(last.accepted, `A's last request was refused while A ran:\n${show(runId)}`);

      await waitFor(() => cluster.timeline.of({ run: runId, kind: 'start', pid: b.pid })[0], 15_000, `${runId} to be re-run on B`).catch(
        (err: Error) => assert.fail(`${err.message}\n${show(runId)}\n${b.tail()}`),
      );
      assert.deepEqual(
        await cluster.timeline.verify(last.token!),
        { accepted: false, code: 'revoked' },
        `the crashed execution's token still verifies after the run was re-run:\n${show(runId)}`,
      );
      const report = await cluster.finished(server, runId, 25_000);
      assert.equal(report.state, 'completed', JSON.stringify(report));
      assert.equal(report.outcome, 'completed', JSON.stringify(report));
      await cluster.timeline.settled();
      t.diagnostic(`A=${a.pid} B=${b.pid}\n${show(runId)}`);
      assert.deepEqual(
        cluster.timeline.of({ run: runId, kind: 'end' }).map((e) => [e.pid, e.accepted]),
        [[b.pid, true]],
        show(runId),
      );
    } finally {
      await Promise.all(workers.map((w) => w.kill()));
    }
  });
});
