// Workflows in one process against a real Redis and real HTTP services: child jobs (`then`) with mapped data, ctx.trigger
// and ctx.triggerAndWait (fan-out, fan-in, a parent's cancel reaching its children), sharding, worker groups, who
// triggered (triggeredBy, and the RFC 8693 `act` claim a real requireJobToken service sees), failure alerts to a real
// webhook receiver. (Sharding across several worker processes: cluster-workflows.test.ts.)
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import type { Runtime } from '../src/runtime/runtime.ts';
import { closeVerifiers, requireJobToken, type JobTokenClaims } from '../src/token/verify.ts';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';
import { ADMIN, TestServer } from './helpers/server.ts';

const PREFIX = 'wf';
const sleepUntilAborted = (ms: number) => `await new Promise((resolve, reject) => {
  const t = setTimeout(resolve, ${ms});
  ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); });
});`;
const call = `await ctx.service('svc').get('whoami', { headers: { 'x-run': ctx.run.id } }).json()`;

const JOBS = {
  'extract.ts': `export default { token: { audience: ['svc'] },
    then: ['load', { job: 'notify', data: (result, run) => ({ message: run.id + ' loaded ' + result.rows }) }, { job: 'load', data: () => ({ rows: 'many' }) }],
    async run(ctx) { ${call}; return { rows: 3 }; } };`,
  'load.ts': `export default { token: { audience: ['svc'] },
    params: { type: 'object', properties: { rows: { type: 'integer' } }, required: ['rows'], additionalProperties: false },
    async run(ctx) { ${call}; return { loaded: ctx.data.rows, by: ctx.run.triggeredBy, parent: ctx.run.parent, trigger: ctx.run.trigger }; } };`,
  'notify.ts': `export default { token: { audience: ['svc'] }, async run(ctx) { return ctx.data; } };`,
  'fan.ts': `export default { token: { audience: ['svc'] },
    async run(ctx) { return Promise.all([1, 2, 3, 4, 5].map((n) => ctx.triggerAndWait('square', { n }))); } };`,
  'square.ts': `export default { token: { audience: ['svc'] }, concurrency: 2, async run(ctx) { ${call}; return ctx.data.n * ctx.data.n; } };`,
  'waiter.ts': `export default { token: { audience: ['svc'] },
    async run(ctx) { globalThis.__child = await ctx.trigger('sleeper'); return ctx.triggerAndWait('sleeper'); } };`,
  'sleeper.ts': `export default { token: { audience: ['svc'] }, concurrency: 2, async run(ctx) { ${sleepUntilAborted(20_000)} } };`,
  'picky.ts': `export default { token: { audience: ['svc'] }, async run(ctx) { return ctx.triggerAndWait('broken'); } };`,
  'broken.ts': `export default { token: { audience: ['svc'] }, async run() { throw new Error('broken on purpose'); } };`,
  'split.ts': `export default { token: { audience: ['svc'] }, shards: 3, concurrency: 3, attempts: 2,
    async run(ctx) {
      const tries = (globalThis.__splitTries ??= {});
      tries[ctx.shard.index] = (tries[ctx.shard.index] ?? 0) + 1;
      const claims = ${call};
      if (ctx.shard.index === 1 && tries[1] === 1) throw new Error('shard 1 fails its first attempt');
      return { index: ctx.shard.index, total: ctx.shard.total, jti: ctx.token.claims.jti, attempt: ctx.run.attempt };
    } };`,
  'split-bad.ts': `export default { token: { audience: ['svc'] }, shards: 2, concurrency: 2,
    async run(ctx) { if (ctx.shard.index === 1) throw new Error('no data for shard 1'); return ctx.shard.index; } };`,
  'report.ts': `export default { token: { audience: ['svc'] }, group: 'reports', async run() { return 'report'; } };`,
  'flaky.ts': `export default { token: { audience: ['svc'] }, attempts: 3, backoff: { type: 'fixed', delay: 50 },
    async run(ctx) { if (ctx.data.fail) throw new Error('flaky failed: ' + ctx.data.fail); return 'ok'; } };`,
};

let fx: Fixture;
let runtime: Runtime;
let server: TestServer;
const servers: http.Server[] = [];
const seen: { run: string; claims: JobTokenClaims }[] = [];
const alerts: Record<string, unknown>[] = [];
let alertServer: http.Server | undefined;
let alertPort = 0;
const g = globalThis as Record<string, unknown>;

function listen(server: http.Server, port = 0): Promise<number> {
  servers.push(server);
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function startAlertReceiver(): Promise<number> {
  alertServer = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      alerts.push(JSON.parse(body) as Record<string, unknown>);
      res.end('ok');
    });
  });
  return listen(alertServer, alertPort);
}

before(async () => {
  // A port for the alert receiver, which starts later (its first deliveries must be retried).
  const probe = http.createServer();
  alertPort = await listen(probe);
  await new Promise((r) => probe.close(r));
  fx = await jobscopeFixture({
    jobs: JOBS,
    env: {
      JOBSCOPE_PREFIX: PREFIX,
      JOBSCOPE_ALERT_WEBHOOK: `http://127.0.0.1:${alertPort}/hook`,
      JOBSCOPE_PUBLIC_URL: 'http://jobs.example.test',
    },
    // The service verifies with the runner's public key.
    envFromKey: async (publicKey, redis) => {
      const app = express();
      app.get('/whoami', requireJobToken({ audience: 'svc', publicKey, redis: redis.url, prefix: PREFIX }), (req, res) => {
        seen.push({ run: String(req.headers['x-run']), claims: req.jobToken! });
        res.json(req.jobToken);
      });
      const svcPort = await listen(http.createServer(app));
      return { JOBSCOPE_SERVICES: `svc=http://127.0.0.1:${svcPort}` };
    },
    workers: true,
    server: true,
  });
  ({ runtime, server } = fx);
});

after(async () => {
  await fx?.close();
  await closeVerifiers();
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
});

const claimsOf = (runId: string) => seen.filter((s) => s.run === runId).map((s) => s.claims);

describe('child jobs and who triggered', () => {
  test('then: children get the result or the mapped data, link both ways; an invalid mapping starts nothing and says why', async () => {
    const res = await server.request('/api/jobs/extract/runs', { method: 'POST', auth: ADMIN, json: { data: {} } });
    assert.equal(res.status, 202);
    const parentId = res.body.runId as string;
    const parent = await fx.wait(parentId);
    assert.equal(parent.outcome, 'completed');
    assert.equal(parent.triggeredBy, 'user:admin');
    assert.deepEqual(claimsOf(parentId)[0].act, { sub: 'user:admin' }, 'the token says on whose behalf the run acts');
    assert.equal(parent.children.length, 2, 'load and notify started; the invalid load was not');
    assert.match(parent.logs.join('\n'), /then: load not started: invalid data for job "load": \/rows must be integer/);
    const [load, notify] = await Promise.all(parent.children.map((id) => fx.wait(id)));
    assert.deepEqual(load.result, { loaded: 3, by: `run:${parentId}`, parent: parentId, trigger: 'parent' });
    assert.equal(load.trigger, 'parent');
    assert.equal(load.parent, parentId);
    assert.equal(load.triggeredBy, `run:${parentId}`);
    assert.deepEqual(claimsOf(load.runId)[0].act, { sub: 'job:extract', run: parentId });
    assert.deepEqual(notify.result, { message: `${parentId} loaded 3` });
    const view = await server.request(`/api/runs/${encodeURIComponent(load.runId)}`, { auth: ADMIN });
    assert.equal(view.body.parent, parentId, 'the API shows the link');
  });

  test('ctx.triggerAndWait: fan-out to 5 runs, fan-in of their results in order', async () => {
    // Triggered as the CLI would (createClient and the API name themselves 'client' and 'user:<login>').
    const fan = await fx.wait((await runtime.control.trigger('fan', {}, { by: 'cli:ops' })).runId, 20_000);
    assert.equal(fan.outcome, 'completed');
    assert.deepEqual(fan.result, [1, 4, 9, 16, 25]);
    assert.equal(fan.children.length, 5);
    assert.equal(fan.triggeredBy, 'cli:ops');
    for (const child of fan.children) assert.deepEqual(claimsOf(child)[0].act, { sub: 'job:fan', run: fan.runId });
  });

  test('a child that fails rejects triggerAndWait with its outcome and error', async () => {
    const picky = await fx.wait(await fx.trigger('picky'));
    assert.equal(picky.outcome, 'failed');
    assert.match(picky.error!, /^run broken:\S+ ended failed: broken on purpose$/);
  });

  test('cancelling a parent cancels the child it waits for', async () => {
    const runId = await fx.trigger('waiter');
    const waited = (await fx.waitFor(runId, (r) => r.children.length === 2, 5000, 'two children')).children[1];
    await fx.waitFor(waited, (r) => r.state === 'active', 5000, 'the waited child to start');
    await fx.client.cancel(runId, 'test');
    const child = await fx.wait(waited);
    assert.equal(child.outcome, 'cancelled');
    assert.match(child.error!, new RegExp(`its parent ${runId} was aborted`));
    // The child it only started (ctx.trigger) is not its to cancel.
    assert.equal((await fx.run(g.__child as string)).state, 'active');
    await fx.client.cancel(g.__child as string, 'test over');
  });

  test('a scheduled run carries no actor', async () => {
    const other = await fx.another({ env: { JOBSCOPE_PREFIX: PREFIX } });
    try {
      const { runtime: mint } = { runtime: other };
      const token = await mint.minter.mint({ job: 'load', run: 'load:x', attempt: 1, audience: ['svc'], scope: [], lifetimeMs: 10_000 });
      assert.equal(token.claims.act, undefined);
      await mint.minter.revoke(token.claims.jti);
    } finally {
      await other.close();
    }
  });
});

describe('sharding broadcast', () => {
  test('shards: 3 runs 3 shard runs with their own tokens; a failed shard retries alone; results in index order', async () => {
    const parent = await fx.wait(await fx.trigger('split'), 20_000);
    assert.equal(parent.outcome, 'completed', String(parent.error));
    const results = parent.result as { index: number; total: number; jti: string; attempt: number }[];
    assert.deepEqual(
      results.map((r) => [r.index, r.total]),
      [
        [0, 3],
        [1, 3],
        [2, 3],
      ],
    );
    assert.equal(new Set(results.map((r) => r.jti)).size, 3, 'each shard has its own token');
    assert.deepEqual(
      results.map((r) => r.attempt),
      [1, 2, 1],
      'only shard 1 was retried',
    );
    assert.deepEqual((g.__splitTries as Record<number, number>)[1], 2);
    assert.equal(parent.children.length, 3);
    for (const child of parent.children) {
      const r = await fx.run(child);
      assert.equal(r.parent, parent.runId);
      assert.ok(r.shard && r.shard.total === 3);
    }
  });

  test('a shard that fails for good fails the broadcast, naming it', async () => {
    const parent = await fx.wait(await fx.trigger('split-bad'), 20_000);
    assert.equal(parent.outcome, 'failed');
    assert.match(parent.error!, /^shard\(s\) 1 failed: #1 no data for shard 1$/);
  });
});

describe('worker groups', () => {
  test('a job with a group runs only on workers of that group', async () => {
    assert.ok(!runtime.servedJobs().includes('report'), 'a worker without --group does not take it');
    assert.deepEqual(runtime.servedJobs(undefined, ['reports']), ['report']);
    const runId = await fx.trigger('report');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await fx.run(runId)).state, 'waiting');
    const reports = await fx.another({ env: { JOBSCOPE_PREFIX: PREFIX } });
    try {
      await reports.startWorkers(undefined, ['reports']);
      assert.equal((await fx.wait(runId)).result, 'report');
      const workers = (await fx.api.get('/api/workers')).body as { alive: boolean; groups: string[]; jobs: string[] }[];
      assert.ok(workers.some((w) => w.alive && w.groups.includes('reports') && w.jobs.join() === 'report'));
    } finally {
      await reports.close();
    }
  });
});

describe('failure alerts', () => {
  test('one POST per run that fails for good (none per attempt), delivered after the receiver comes up; then recovered', async () => {
    const failed = await fx.wait(await fx.trigger('flaky', { fail: 'disk full' }));
    assert.equal(failed.attempts, 3);
    // The receiver is down: the delivery is retried with backoff.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(alerts.length, 0);
    await startAlertReceiver();
    // Earlier tests' failures alert too (the webhook is global here): this test reads the flaky job's.
    const flaky = () => alerts.filter((a) => a.job === 'flaky');
    await until(() => flaky().length >= 1, 15_000, 'the alert to be delivered');
    const [alert] = flaky();
    assert.equal(alert.event, 'failed');
    assert.equal(alert.job, 'flaky');
    assert.equal(alert.runId, failed.runId);
    assert.equal(alert.outcome, 'failed');
    assert.equal(alert.error, 'flaky failed: disk full');
    assert.equal(alert.attempts, 3);
    assert.equal(alert.url, `http://jobs.example.test/dashboard/run.html?id=${encodeURIComponent(failed.runId)}`);
    assert.match(String(alert.text), /^jobscope: flaky failed: run flaky:\S+ after 3 attempts \([\d.]+ s\): flaky failed: disk full http/);
    const ok = await fx.wait(await fx.trigger('flaky'));
    assert.equal(ok.outcome, 'completed');
    await until(() => flaky().length >= 2, 10_000, 'the recovered alert');
    assert.equal(flaky()[1].event, 'recovered');
    assert.equal(flaky()[1].runId, ok.runId);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(flaky().length, 2, 'exactly one alert per final failure and one recovery');
    // The other failures of this file alerted once per run too, with their own outcome.
    const cancelled = alerts.filter((a) => a.job === 'sleeper');
    assert.equal(cancelled.length, 0, 'a cancelled run is not an alert');
    assert.equal(alerts.filter((a) => a.job === 'broken').length, 1);
  });
});
