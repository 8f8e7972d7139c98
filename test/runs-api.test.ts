// GET /api/runs against a real Redis, real workers and real HTTP on 127.0.0.1: the history across jobs, newest first, every
// filter (job, outcome incl. timeout/cancelled/skipped, trigger, triggered-by, time range), cursor pagination without
// duplicates or gaps, bad queries refused, and the index staying exact under retention (runs BullMQ removed disappear).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jobOptions } from '../src/control/queues.ts';
import type { RunRow } from '../src/run/model.ts';
import type { Runtime } from '../src/runtime/runtime.ts';
import { addUser } from '../src/server/users.ts';
import { jobscopeFixture, until, type Api, type Fixture } from './helpers/fixture.ts';
import { JWT_LIKE, TestServer, VIEWER } from './helpers/server.ts';

let fx: Fixture;
let tmp: string;
let runtime: Runtime;
let srv: TestServer;
/** Every run this file made, by what the test knows about it. */
const made: Record<string, string[]> = {};
/** The operators whose triggers the history names (`triggeredBy: 'user:<login>'`). */
const PASSWORD = 'operator-password-01';
const as = (user: string): Api => fx.api.as({ user, password: PASSWORD });

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'jobscope-runs-'));
  const usersFile = path.join(tmp, 'users.json');
  for (const name of ['ada', 'bob', 'kim']) await addUser(usersFile, { name, role: 'operator', password: PASSWORD });
  fx = await jobscopeFixture({
    jobs: {
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
    },
    env: { JOBSCOPE_PREFIX: 'runs' },
    workers: true,
    server: { usersFile },
  });
  ({ runtime, server: srv } = fx);

  const run = async (label: string, triggered: Promise<string>) => {
    const runId = await triggered;
    (made[label] ??= []).push(runId);
    await fx.wait(runId);
    return runId;
  };
  await run('early', fx.trigger('ok')); // createClient: trigger 'api', by 'client'
  await new Promise((r) => setTimeout(r, 30));
  made.between = [String(Date.now())];
  await new Promise((r) => setTimeout(r, 30));
  for (let i = 0; i < 4; i++) await run('manual-ada', as('ada').trigger('ok', {}, { trigger: 'manual' }));
  // As `jobscope trigger` records it (the CLI's own way of naming who triggered).
  await run(
    'cli',
    runtime.control.trigger('ok', {}, { trigger: 'api', by: 'cli:ops' }).then((r) => r.runId),
  );
  await run('failed', as('ada').trigger('bad', {}, { trigger: 'manual' }));
  await run('timeout', fx.trigger('hang'));
  // A scheduled fire of a job that has no schedule (any more): the worker records it as skipped. Added to the BullMQ
  // queue the way a scheduler would, with the job's options.
  const skipped = await fx.queue('ok').add('schedule', {}, jobOptions(runtime.registry.get('ok')));
  made.skipped = [`ok:${skipped.id}`];
  await fx.wait(made.skipped[0]);
  const slow = await as('bob').trigger('slow', {}, { trigger: 'manual' });
  await fx.waitFor(slow, (r) => r.state === 'active', 5000, 'slow to start');
  await fx.client.cancel(slow);
  await fx.wait(slow);
  made.cancelled = [slow];
  // One run still going: it is listed first.
  const active = await as('bob').trigger('slow', {}, { trigger: 'manual' });
  await fx.waitFor(active, (r) => r.state === 'active', 5000, 'slow to start');
  made.active = [active];
});

after(async () => {
  for (const id of made.active ?? []) await fx?.client.cancel(id).catch(() => undefined);
  await fx?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
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
    for (let i = 0; i < 7; i++) kept.push(await as('kim').trigger('kept', {}, { trigger: 'manual' }));
    for (const id of kept) await fx.wait(id).catch(() => undefined);
    const failing: string[] = [];
    for (let i = 0; i < 3; i++) failing.push(await as('kim').trigger('kept', { fail: true }, { trigger: 'manual' }));
    await until(async () => (await fx.api.job('kept')).counts.failed === 1, 5000, 'retention');
    // Query once so the index learns every run, then again after more runs pushed the first ones out.
    const listed = async (q: string) => (await runs(q)).runs.map((r) => r.runId).sort();
    // The runs BullMQ kept: what every listing must match.
    const completedNow = (await fx.queue('kept').getJobs(['completed'])).map((j) => `kept:${j.id}`).sort();
    assert.equal(completedNow.length, 3);
    assert.deepEqual(await listed('?job=kept&state=completed'), completedNow);
    assert.deepEqual(await listed('?by=user:kim&state=completed'), completedNow, 'through the index');
    assert.deepEqual(await listed('?by=user:kim&state=failed'), [failing[2]]);
    for (let i = 0; i < 3; i++) await fx.wait(await as('kim').trigger('kept'));
    const after = (await fx.queue('kept').getJobs(['completed'])).map((j) => `kept:${j.id}`).sort();
    assert.deepEqual(await listed('?by=user:kim&state=completed'), after);
    assert.deepEqual(await listed('?job=kept&trigger=api'), after);
    // Nothing of the removed runs is left in the index: each index set holds only kept runs.
    const keys = await fx.redis.keys('runs:_idx:kept:*:*:*');
    assert.ok(keys.length > 0);
    for (const key of keys) {
      const ids = await fx.redis.zrange(key, '0', '-1');
      for (const id of ids) assert.equal(await fx.redis.exists(`runs:kept:${id}`), 1, `${key} lists removed run ${id}`);
    }
  });
});
