// Guarantees under contention and double faults (issue 21), with real `jobscope` worker and server processes on one Redis:
// overlap 'replace' under a burst of concurrent triggers (from one client and from two servers), a scheduled fire of a
// replace job, a replace run of a job with concurrency 2 waiting for the run it replaced; a parent waiting on a child on
// another worker, handed back (SIGTERM) or crashed (kill -9); a run whose workers are killed twice in a row; a run killed
// past JOBSCOPE_MAX_STALLS, which fails with an alert, and the next success's `recovered`.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createClient } from '../src/client.ts';
import { Cluster, waitFor, type JobscopeProcess, type TimelineEvent } from './helpers/cluster.ts';

/** Posts to the timeline without a token (the run's scope is closed once it is aborted): marks where a handler stopped. */
const RAW_HELPER = `export async function raw(kind, ctx) {
  const url = process.env.JOBSCOPE_SERVICES.split(',').find((s) => s.startsWith('rec=')).slice(4);
  await fetch(url + '/' + kind, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ run: ctx.run.id, attempt: ctx.run.attempt, trigger: ctx.run.trigger, pid: process.pid }),
  });
}
`;

/**
 * A replace job: posts start, runs `ms` unless aborted; when aborted it takes `settleMs` more (a handler slow to stop),
 * posts 'stop' and throws. So each execution is [start, end | stop] on the timeline.
 */
const replaceJob = (ms: number, extra = '', settleMs = 0) => `import { post } from './_timeline.ts';
import { raw } from './_raw.ts';
export default {
  token: { audience: ['rec'] },
  overlap: 'replace',
  ${extra}
  async run(ctx) {
    await post(ctx, 'start');
    const until = Date.now() + ${ms};
    while (Date.now() < until && !ctx.signal.aborted) await new Promise((r) => setTimeout(r, 50));
    if (ctx.signal.aborted) {
      await new Promise((r) => setTimeout(r, ${settleMs}));
      await raw('stop', ctx);
      throw ctx.signal.reason;
    }
    await post(ctx, 'end');
    return { ran: ctx.run.id };
  },
};
`;

/** Posts start, a tick every 300 ms for `ms` (only ctx.signal stops it), then end. */
const tickingJob = (ms: number, extra = '') => `import { post, ticking } from './_timeline.ts';
export default {
  token: { audience: ['rec'] },
  ${extra}
  async run(ctx) {
    await post(ctx, 'start');
    if (!ctx.data.quick) await ticking(ctx, ${ms});
    await post(ctx, 'end');
    return { ran: ctx.run.id, pid: process.pid };
  },
};
`;

const PARENT = `import { post } from './_timeline.ts';
export default {
  token: { audience: ['rec'] },
  async run(ctx) {
    await post(ctx, 'start');
    const child = await ctx.triggerAndWait(ctx.data.child);
    await post(ctx, 'end');
    return { child };
  },
};
`;

let cluster: Cluster;
let servers: JobscopeProcess[];
const alerts: { event: string; job: string; runId: string; outcome: string; error: string | null }[] = [];
let alertServer: http.Server;

before(async () => {
  alertServer = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c));
    req.on('end', () => {
      try {
        alerts.push(JSON.parse(body) as (typeof alerts)[number]);
      } catch {
        // not an alert
      }
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => alertServer.listen(0, '127.0.0.1', resolve));
  const hook = `http://127.0.0.1:${(alertServer.address() as AddressInfo).port}/hook`;
  cluster = await Cluster.start({
    prefix: 'cf',
    env: { JOBSCOPE_ALERT_WEBHOOK: hook },
    jobs: {
      '_raw.ts': RAW_HELPER,
      'burst-client.ts': replaceJob(3000),
      'burst-servers.ts': replaceJob(3000),
      'cron-replace.ts': replaceJob(20_000, "schedule: { every: '4s' },"),
      'wide-replace.ts': replaceJob(4000, 'concurrency: 2,', 1500),
      'parent-term.ts': PARENT,
      'parent-kill.ts': PARENT,
      'kid-term.ts': tickingJob(6000),
      'kid-kill.ts': tickingJob(8000),
      'sturdy.ts': tickingJob(5000),
      'fragile.ts': tickingJob(5000),
    },
  });
  servers = await Promise.all([cluster.spawn('server'), cluster.spawn('server')]);
});

after(async () => {
  await cluster?.close();
  alertServer?.closeAllConnections();
  await new Promise<void>((resolve) => (alertServer ? alertServer.close(() => resolve()) : resolve()));
});

/** Workers serving only `job` (each test uses its own jobs, so leftovers of a failed test cannot interfere). */
function workersFor(job: string, n: number, env: Record<string, string> = {}): Promise<JobscopeProcess[]> {
  return Promise.all(
    Array.from({ length: n }, (_, i) => cluster.spawn('worker', { env, args: ['--only', job], name: `${job}-w${i + 1}` })),
  );
}

const ofJob = (job: string) => (e: TimelineEvent) => e.run.startsWith(`${job}:`);

/** Each execution as [start, its end or stop] in arrival order; an execution that never closed counts as still running. */
function intervals(job: string): { run: string; pid: number; from: number; to: number; closedBy: string | undefined }[] {
  const events = cluster.timeline.events.filter(ofJob(job));
  return events
    .filter((e) => e.kind === 'start')
    .map((s) => {
      const close = events.find(
        (e) => e.seq > s.seq && e.run === s.run && e.pid === s.pid && e.attempt === s.attempt && ['end', 'stop'].includes(e.kind),
      );
      return { run: s.run, pid: s.pid, from: s.seq, to: close?.seq ?? Infinity, closedBy: close?.kind };
    });
}

function maxAtOnce(job: string): number {
  const points = intervals(job).flatMap((x) => [
    { seq: x.from, d: 1 },
    { seq: x.to, d: -1 },
  ]);
  points.sort((a, b) => a.seq - b.seq || a.d - b.d);
  let now = 0;
  let max = 0;
  for (const p of points) max = Math.max(max, (now += p.d));
  return max;
}

/** The run's report once finished, or 'removed' when it was cancelled before it started (its run is gone). */
async function settled(runId: string, timeoutMs: number): Promise<{ outcome: string; error?: string; result?: unknown }> {
  return waitFor(
    async () => {
      const r = await cluster.run(servers[0], runId);
      if (r.status === 404) return { outcome: 'removed' };
      return r.status === 200 && (r.body.state === 'completed' || r.body.state === 'failed') ? r.body : undefined;
    },
    timeoutMs,
    `${runId} to finish`,
    150,
  );
}

/** After a burst: exactly one run completed, every other was cancelled or removed and none ran its handler to the end. */
async function checkBurst(job: string, runIds: string[]): Promise<void> {
  const reports = await Promise.all(runIds.map((id) => settled(id, 45_000)));
  await cluster.timeline.settled();
  const show = cluster.timeline.describe(ofJob(job));
  const completed = runIds.filter((_, i) => reports[i].outcome === 'completed');
  assert.equal(completed.length, 1, `completed: ${completed.join(', ')}\n${show}`);
  reports.forEach((r, i) => {
    if (runIds[i] !== completed[0]) assert.ok(['cancelled', 'removed'].includes(r.outcome), `${runIds[i]}: ${JSON.stringify(r)}`);
  });
  const ends = cluster.timeline.of({ kind: 'end' }).filter(ofJob(job));
  assert.deepEqual(
    ends.map((e) => e.run),
    completed,
    `only the completed run may reach its end:\n${show}`,
  );
  assert.equal(maxAtOnce(job), 1, `two handlers ran at once:\n${show}`);
}

describe("overlap: 'replace' under a burst", () => {
  test('20 concurrent triggers from one client while a run is active: one completes, the others are cancelled', async () => {
    const workers = await workersFor('burst-client', 2);
    const client = createClient({ redisUrl: cluster.redis.url, prefix: cluster.prefix });
    try {
      const first = await cluster.trigger(servers[0], 'burst-client');
      assert.equal(first.status, 202, first.text);
      await waitFor(() => cluster.timeline.of({ run: first.body.runId, kind: 'start' })[0], 15_000, 'the first run to start');
      const burst = await Promise.all(Array.from({ length: 20 }, () => client.trigger('burst-client')));
      await checkBurst('burst-client', [String(first.body.runId), ...burst.map((b) => b.runId)]);
    } finally {
      await client.close();
      await Promise.all(workers.map((w) => w.kill()));
    }
  });

  test('20 concurrent triggers through two servers while a run is active: one completes, never two at once', async () => {
    const workers = await workersFor('burst-servers', 2);
    try {
      const first = await cluster.trigger(servers[0], 'burst-servers');
      await waitFor(() => cluster.timeline.of({ run: first.body.runId, kind: 'start' })[0], 15_000, 'the first run to start');
      const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => cluster.trigger(servers[i % 2], 'burst-servers')));
      for (const b of burst) assert.equal(b.status, 202, b.text);
      await checkBurst('burst-servers', [String(first.body.runId), ...burst.map((b) => String(b.body.runId))]);
    } finally {
      await Promise.all(workers.map((w) => w.kill()));
    }
  });

  test('a scheduled fire cancels the running run at its due time (concurrency 1), then runs', async () => {
    const workers = await workersFor('cron-replace', 1);
    try {
      // Two scheduled executions that started on time: the earlier one must have been replaced by the later one.
      const starts = await waitFor(
        () => {
          const s = cluster.timeline.of({ kind: 'start' }).filter((e) => ofJob('cron-replace')(e) && e.trigger === 'schedule');
          return s.length >= 2 ? s : undefined;
        },
        25_000,
        'two scheduled executions',
      ).catch((err: Error) => assert.fail(`${err.message}\n${cluster.timeline.describe(ofJob('cron-replace'))}\n${workers[0].tail()}`));
      const [firstRun, secondRun] = starts.map((s) => s.run);
      const report = await settled(firstRun, 15_000);
      const show = cluster.timeline.describe(ofJob('cron-replace'));
      assert.equal(report.outcome, 'cancelled', `${JSON.stringify(report)}\n${show}`);
      assert.match(String(report.error), /replaced by a scheduled run/);
      assert.notEqual(firstRun, secondRun);
      // The replaced execution stopped before the next one started, and well before its 20 s were up.
      const first = intervals('cron-replace').find((x) => x.run === firstRun)!;
      assert.equal(first.closedBy, 'stop', show);
      assert.ok(first.to < starts[1].seq, show);
      assert.ok(starts[1].at - starts[0].at < 10_000, `the second fire started ${starts[1].at - starts[0].at} ms after the first\n${show}`);
      assert.equal(maxAtOnce('cron-replace'), 1, show);
    } finally {
      await Promise.all(workers.map((w) => w.kill()));
    }
  });

  test('concurrency 2: a replace run waits until the run it replaced has stopped', async () => {
    const workers = await workersFor('wide-replace', 2);
    try {
      const first = await cluster.trigger(servers[0], 'wide-replace');
      await waitFor(() => cluster.timeline.of({ run: first.body.runId, kind: 'start' })[0], 15_000, 'the first run to start');
      const second = await cluster.trigger(servers[1], 'wide-replace');
      const [a, b] = await Promise.all([settled(first.body.runId, 20_000), settled(second.body.runId, 20_000)]);
      await cluster.timeline.settled();
      const show = cluster.timeline.describe(ofJob('wide-replace'));
      assert.equal(a.outcome, 'cancelled', show);
      assert.equal(b.outcome, 'completed', show);
      const stop = cluster.timeline.of({ run: first.body.runId }).find((e) => (e.kind as string) === 'stop');
      const start = cluster.timeline.of({ run: second.body.runId, kind: 'start' })[0];
      assert.ok(stop && start && start.seq > stop.seq, `the replacing run started before the replaced one stopped:\n${show}`);
    } finally {
      await Promise.all(workers.map((w) => w.kill()));
    }
  });
});

/** A parent on two workers waits for its child on a third; `fault` hits the parent's worker; the child must run once. */
async function parentSurvives(parentJob: string, kidJob: string, fault: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  const env = { JOBSCOPE_SHUTDOWN_TIMEOUT: '1s', JOBSCOPE_LOCK_DURATION: '2s' };
  const parents = await workersFor(parentJob, 2, env);
  const [kids] = await workersFor(kidJob, 1);
  try {
    const res = await cluster.trigger(servers[0], parentJob, { child: kidJob });
    assert.equal(res.status, 202, res.text);
    const parentRun = String(res.body.runId);
    const parentStart = await waitFor(() => cluster.timeline.of({ run: parentRun, kind: 'start' })[0], 15_000, 'the parent to start');
    const kidStart = await waitFor(() => cluster.timeline.of({ kind: 'start' }).find(ofJob(kidJob)), 15_000, 'the child to start');
    const a = parents.find((p) => p.pid === parentStart.pid)!;
    const b = parents.find((p) => p !== a)!;
    if (fault === 'SIGTERM') {
      a.signal('SIGTERM');
      assert.equal((await a.waitExit(15_000)).code, 0, a.tail());
    } else {
      await a.kill();
    }
    const again = await waitFor(
      () => cluster.timeline.of({ run: parentRun, kind: 'start', pid: b.pid })[0],
      20_000,
      'the parent to start again on the other worker',
    ).catch((err: Error) => assert.fail(`${err.message}\n${cluster.timeline.describe()}\n${b.tail()}`));
    const report = await settled(parentRun, 30_000);
    await cluster.timeline.settled();
    const show = cluster.timeline.describe((e) => e.run === parentRun || ofJob(kidJob)(e));
    assert.equal(again.attempt, 1, show);
    assert.equal(report.outcome, 'completed', `${JSON.stringify(report)}\n${show}\n${b.tail()}`);
    // One child, one execution of it, completed: its result is the parent's.
    const kidStarts = cluster.timeline.of({ kind: 'start' }).filter(ofJob(kidJob));
    assert.deepEqual(
      kidStarts.map((s) => s.run),
      [kidStart.run],
      `the child ran more than once:\n${show}`,
    );
    const kidReport = await settled(kidStart.run, 5000);
    assert.equal(kidReport.outcome, 'completed', JSON.stringify(kidReport));
    assert.deepEqual((report.result as { child: { ran: string } }).child.ran, kidStart.run);
  } finally {
    await Promise.all([...parents, kids].map((w) => w.kill()));
  }
}

describe('children survive their parent being handed back', () => {
  test('SIGTERM to the worker of a parent waiting on a child: the child runs once, the re-run parent gets its result', async () => {
    await parentSurvives('parent-term', 'kid-term', 'SIGTERM');
  });
  test('kill -9 to the worker of a parent waiting on a child: the child runs once, the re-run parent gets its result', async () => {
    await parentSurvives('parent-kill', 'kid-kill', 'SIGKILL');
  });
});

/** Starts `job`, then kills the worker running it `kills` times in a row, each time once it has started again elsewhere. */
async function killRunning(job: string, workers: JobscopeProcess[], kills: number): Promise<{ runId: string; pids: number[] }> {
  const res = await cluster.trigger(servers[0], job);
  assert.equal(res.status, 202, res.text);
  const runId = String(res.body.runId);
  const pids: number[] = [];
  for (let i = 0; i < kills; i++) {
    const start = await waitFor(
      () => cluster.timeline.of({ run: runId, kind: 'start' }).find((s) => !pids.includes(s.pid)),
      30_000,
      `${runId} to start on a live worker (after ${i} kills)`,
    ).catch((err: Error) => assert.fail(`${err.message}\n${cluster.timeline.describe((e) => e.run === runId)}\n${cluster.tails()}`));
    pids.push(start.pid);
    await workers.find((w) => w.pid === start.pid)!.kill();
  }
  return { runId, pids };
}

describe('crashes do not use up a run', () => {
  test('kill -9 to two workers in a row: the run completes on a third', async () => {
    const workers = await workersFor('sturdy', 3, { JOBSCOPE_LOCK_DURATION: '2s' });
    try {
      const { runId, pids } = await killRunning('sturdy', workers, 2);
      const report = await settled(runId, 40_000);
      const show = cluster.timeline.describe((e) => e.run === runId);
      assert.equal(report.outcome, 'completed', `${JSON.stringify(report)}\n${show}`);
      const end = cluster.timeline.of({ run: runId, kind: 'end' });
      assert.equal(end.length, 1, show);
      assert.ok(!pids.includes(end[0].pid), show);
      const recovered = workers.flatMap((w) => w.logs(/recovered a stalled run/));
      assert.ok(recovered.length >= 2, `no 'recovered a stalled run' line per crash:\n${cluster.tails()}`);
    } finally {
      await Promise.all(workers.map((w) => w.kill()));
    }
  });

  test('past JOBSCOPE_MAX_STALLS the run fails with its own wording and an alert; the next success sends recovered', async () => {
    const workers = await workersFor('fragile', 3, { JOBSCOPE_LOCK_DURATION: '2s', JOBSCOPE_MAX_STALLS: '1' });
    try {
      const { runId } = await killRunning('fragile', workers, 2);
      const report = await settled(runId, 40_000);
      assert.equal(report.outcome, 'failed', JSON.stringify(report));
      assert.match(String(report.error), /stalled too often: its worker stopped .* JOBSCOPE_MAX_STALLS/);
      const failed = await waitFor(() => alerts.find((a) => a.runId === runId), 20_000, 'the failed alert').catch((err: Error) =>
        assert.fail(`${err.message}\n${JSON.stringify(alerts)}\n${cluster.tails()}`),
      );
      assert.equal(failed.event, 'failed');
      assert.match(String(failed.error), /stalled too often/);

      const next = await cluster.trigger(servers[0], 'fragile', { quick: true });
      assert.equal((await settled(next.body.runId, 20_000)).outcome, 'completed');
      const recovered = await waitFor(() => alerts.find((a) => a.runId === next.body.runId), 20_000, 'the recovered alert');
      assert.equal(recovered.event, 'recovered');
    } finally {
      await Promise.all(workers.map((w) => w.kill()));
    }
  });
});
