// GET /api/runs against a real Redis, real workers and real HTTP on 127.0.0.1: the history across jobs, newest first, every
// filter (job, outcome incl. timeout/cancelled/skipped, trigger, triggered-by, time range), cursor pagination without
// duplicates or gaps, bad queries refused, and the index staying exact under retention (runs BullMQ removed disappear).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jobOptions } from '../src/control/queues.ts';
import type { RunRow } from '../src/run/model.ts';
import type { Runtime } from '../src/runtime/runtime.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { jobsDir, removeDir, testRuntime } from './helpers/runtime.ts';
import { JWT_LIKE, TestServer, VIEWER } from './helpers/server.ts';
import { until, waitForRun } from './helpers/wait.ts';

let redis: TestRedis;
let dir: string;
let runtime: Runtime;
let srv: TestServer;
/** Every run this file made, by what the test knows about it. */
const made: Record<string, string[]> = {};

before(async () => {
  redis = await startRedis();
  dir = jobsDir({
    'ok.ts': `export default {
      token: { audience: ['svc'] },
      concurrency: 5,
      async run(ctx) { await ctx.log('hello ' + ctx.token.reveal()); return { ok: true }; },
    };`,
    'bad.ts': `export default {
      token: { audience: ['svc'] },
      async run() { throw new Error('broken on purpose'); },
    };`,
    'hang.ts': `export default {
      token: { audience: ['svc'] },
      timeout: '150ms',
      async run(ctx) { await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))); },
    };`,
    'slow.ts': `export default {
      token: { audience: ['svc'] },
      async run(ctx) {
        await new Promise((resolve, reject) => {
          const t = setTimeout(resolve, 10000);
          ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); });
        });
      },
    };`,
    'kept.ts': `export default {
      token: { audience: ['svc'] },
      keep: { completed: { count: 3 }, failed: { count: 1 } },
      async run(ctx) { if (ctx.data.fail) throw new Error('fails'); return 1; },
    };`,
  });
  ({ runtime } = await testRuntime({ redisUrl: redis.url, jobsDir: dir, env: { JOBSCOPE_PREFIX: 'runs' } }));
  await runtime.startWorkers();
  srv = await TestServer.start(runtime);

  const run = async (label: string, job: string, data: unknown = {}, opts: Parameters<Runtime['control']['trigger']>[2] = {}) => {
    const { runId } = await runtime.control.trigger(job, data, opts);
    (made[label] ??= []).push(runId);
    await waitForRun(runtime, runId);
    return runId;
  };
  await run('early', 'ok', {}, { trigger: 'api', by: 'client' });
  await new Promise((r) => setTimeout(r, 30));
  made.between = [String(Date.now())];
  await new Promise((r) => setTimeout(r, 30));
  for (let i = 0; i < 4; i++) await run('manual-ada', 'ok', {}, { trigger: 'manual', by: 'user:ada' });
  await run('cli', 'ok', {}, { trigger: 'api', by: 'cli:ops' });
  await run('failed', 'bad', {}, { by: 'user:ada', trigger: 'manual' });
  await run('timeout', 'hang');
  // A scheduled fire of a job that has no schedule (any more): the worker records it as skipped.
  const skipped = await runtime.queues.queue('ok').add('schedule', {}, jobOptions(runtime.registry.get('ok')));
  made.skipped = [`ok:${skipped.id}`];
  await waitForRun(runtime, made.skipped[0]);
  const { runId: slow } = await runtime.control.trigger('slow', {}, { by: 'user:bob', trigger: 'manual' });
  await until(async () => (await runtime.queues.report(slow)).state === 'active', 5000, 'slow to start');
  await runtime.control.cancel(slow);
  await waitForRun(runtime, slow);
  made.cancelled = [slow];
  // One run still going: it is listed first.
  const { runId: active } = await runtime.control.trigger('slow', {}, { by: 'user:bob', trigger: 'manual' });
  await until(async () => (await runtime.queues.report(active)).state === 'active', 5000, 'slow to start');
  made.active = [active];
});

after(async () => {
  for (const id of made.active ?? []) await runtime?.control.cancel(id).catch(() => undefined);
  await srv?.close();
  await runtime?.close();
  await redis?.destroy();
  removeDir(dir);
});

async function runs(query: string, auth = VIEWER): Promise<{ runs: RunRow[]; next: string | null }> {
  const res = await srv.request(`/api/runs${query}`, { auth });
  assert.equal(res.status, 200, res.text);
  assert.doesNotMatch(res.text, JWT_LIKE);
  return res.body;
}

/** Every page of a query, following the cursor (bounded). */
async function allPages(query: string, limit: number): Promise<RunRow[]> {
  const out: RunRow[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 100; i++) {
    const sep = query ? '&' : '?';
    const page = await runs(`${query}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    assert.ok(page.runs.length <= limit);
    out.push(...page.runs);
    if (!page.next) return out;
    cursor = page.next;
  }
  throw new Error('more than 100 pages');
}

describe('GET /api/runs', () => {
  test('every run across jobs, the active one first, then newest finished first, with outcome, trigger and who', async () => {
    const { runs: list, next } = await runs('');
    assert.equal(next, null);
    const ids = list.map((r) => r.runId);
    const expected = Object.entries(made)
      .filter(([k]) => k !== 'between')
      .flatMap(([, v]) => v);
    assert.deepEqual([...ids].sort(), [...expected].sort());
    assert.equal(list[0].runId, made.active[0]);
    assert.equal(list[0].state, 'active');
    const finished = list.slice(1);
    for (let i = 1; i < finished.length; i++) assert.ok(finished[i - 1].finishedAt! >= finished[i].finishedAt!, 'newest finished first');
    const byId = new Map(list.map((r) => [r.runId, r]));
    assert.equal(byId.get(made.timeout[0])?.outcome, 'timeout');
    assert.equal(byId.get(made.cancelled[0])?.outcome, 'cancelled');
    assert.equal(byId.get(made.skipped[0])?.outcome, 'skipped');
    assert.equal(byId.get(made.failed[0])?.outcome, 'failed');
    assert.match(byId.get(made.failed[0])?.error ?? '', /broken on purpose/);
    assert.equal(byId.get(made['manual-ada'][0])?.trigger, 'manual');
    assert.equal(byId.get(made['manual-ada'][0])?.triggeredBy, 'user:ada');
    assert.equal(byId.get(made.skipped[0])?.triggeredBy, 'schedule');
    assert.ok((byId.get(made.early[0])?.durationMs ?? -1) >= 0);
  });

  test('filters: job, outcome (timeout, cancelled, skipped, failed, completed), unfinished state, trigger, triggered-by', async () => {
    const ids = async (q: string) => (await runs(q)).runs.map((r) => r.runId).sort();
    assert.deepEqual(await ids('?job=hang'), made.timeout);
    assert.deepEqual(await ids('?state=timeout'), made.timeout);
    assert.deepEqual(await ids('?state=cancelled'), made.cancelled);
    assert.deepEqual(await ids('?state=skipped'), made.skipped);
    assert.deepEqual(await ids('?state=failed'), made.failed);
    assert.deepEqual(await ids('?state=active'), made.active);
    assert.deepEqual(await ids('?state=timeout,cancelled'), [...made.timeout, ...made.cancelled].sort());
    assert.deepEqual(await ids('?state=completed&job=ok'), [...made.early, ...made['manual-ada'], ...made.cli].sort());
    assert.deepEqual(await ids('?trigger=manual&job=ok'), [...made['manual-ada']].sort());
    assert.deepEqual(await ids('?by=user:ada'), [...made['manual-ada'], ...made.failed].sort());
    assert.deepEqual(await ids('?by=user:ada&state=failed'), made.failed);
    assert.deepEqual(await ids('?by=cli:ops'), made.cli);
    assert.deepEqual(await ids('?by=user:bob'), [...made.cancelled, ...made.active].sort());
    assert.deepEqual(await ids('?by=schedule'), made.skipped);
    assert.deepEqual(await ids('?by=user:nobody'), []);
    assert.deepEqual(await ids('?job=ok,bad&trigger=manual'), [...made['manual-ada'], ...made.failed].sort());
  });

  test('time range: from/to (ISO or epoch ms) on the finish time', async () => {
    const between = Number(made.between[0]);
    const before = (await runs(`?to=${between}&state=finished`)).runs.map((r) => r.runId);
    assert.deepEqual(before, made.early);
    const after = (await runs(`?from=${new Date(between).toISOString()}&job=ok&state=completed`)).runs.map((r) => r.runId).sort();
    assert.deepEqual(after, [...made['manual-ada'], ...made.cli].sort());
  });

  test('cursor pagination: pages of 2 give every run once, in the same order as one page', async () => {
    const whole = (await runs('?limit=200')).runs.map((r) => r.runId);
    const paged = (await allPages('', 2)).map((r) => r.runId);
    assert.deepEqual(paged, whole);
    const filtered = (await allPages('?by=user:ada', 1)).map((r) => r.runId);
    assert.deepEqual(
      filtered,
      (await runs('?by=user:ada')).runs.map((r) => r.runId),
    );
  });

  test('bad queries are 400 with a reason', async () => {
    for (const q of ['?state=exploded', '?job=nope', '?from=yesterday', '?limit=0', '?cursor=abc']) {
      const res = await srv.request(`/api/runs${q}`, { auth: VIEWER });
      assert.equal(res.status, 400, q);
      assert.equal(res.body.error, 'bad_query', q);
      assert.ok(res.body.message, q);
    }
  });
});

describe('the index under retention', () => {
  test("runs removed by the job's keep rules disappear from every listing and from the index", async () => {
    const kept: string[] = [];
    for (let i = 0; i < 7; i++) kept.push((await runtime.control.trigger('kept', {}, { by: 'user:kim', trigger: 'manual' })).runId);
    for (const id of kept) await waitForRun(runtime, id).catch(() => undefined);
    const failing: string[] = [];
    for (let i = 0; i < 3; i++)
      failing.push((await runtime.control.trigger('kept', { fail: true }, { by: 'user:kim', trigger: 'manual' })).runId);
    await until(async () => (await runtime.queues.queue('kept').getJobCounts('completed', 'failed')).failed === 1, 5000, 'retention');
    // Query once so the index learns every run, then again after more runs pushed the first ones out.
    const listed = async (q: string) => (await runs(q)).runs.map((r) => r.runId).sort();
    const completedNow = (await runtime.queues.queue('kept').getJobs(['completed'])).map((j) => `kept:${j.id}`).sort();
    assert.equal(completedNow.length, 3);
    assert.deepEqual(await listed('?job=kept&state=completed'), completedNow);
    assert.deepEqual(await listed('?by=user:kim&state=completed'), completedNow, 'through the index');
    assert.deepEqual(await listed('?by=user:kim&state=failed'), [failing[2]]);
    for (let i = 0; i < 3; i++) await waitForRun(runtime, (await runtime.control.trigger('kept', {}, { by: 'user:kim' })).runId);
    const after = (await runtime.queues.queue('kept').getJobs(['completed'])).map((j) => `kept:${j.id}`).sort();
    assert.deepEqual(await listed('?by=user:kim&state=completed'), after);
    assert.deepEqual(await listed('?job=kept&trigger=api'), after);
    // Nothing of the removed runs is left in the index: each index set holds only kept runs.
    const keys = await runtime.redis.keys('runs:_idx:kept:*:*:*');
    assert.ok(keys.length > 0);
    for (const key of keys) {
      const ids = await runtime.redis.zrange(key, '0', '-1');
      for (const id of ids) assert.equal(await runtime.redis.exists(`runs:kept:${id}`), 1, `${key} lists removed run ${id}`);
    }
  });
});
