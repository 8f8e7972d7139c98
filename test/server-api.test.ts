// The HTTP API, auth and Bull Board guard against a real Redis and real HTTP on 127.0.0.1: every route, every error status,
// with and without credentials, admin vs read-only viewer; and no token in any answer or log line.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { LoginLimiter } from '../src/server/auth.ts';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';
import type { LogCapture } from './helpers/runtime.ts';
import { ADMIN, JWT_LIKE, TestServer, VIEWER, basic } from './helpers/server.ts';

let fx: Fixture;
let logs: LogCapture;
let srv: TestServer;

before(async () => {
  fx = await jobscopeFixture({
    jobs: {
      // Logs and returns its raw token on purpose: the worker must scrub it, and nothing may reach an HTTP answer.
      'hello.ts': `export default {
      description: 'Says hello',
      params: { type: 'object', properties: { n: { type: 'integer', minimum: 0, maximum: 5 }, who: { type: 'string' } },
                required: ['n'], additionalProperties: false },
      token: { audience: ['svc'], scope: ['hello:say'] },
      async run(ctx) {
        await ctx.log('hello ' + (ctx.data.who ?? 'world') + ' x' + ctx.data.n);
        await ctx.log('my token is ' + ctx.token.reveal());
        return { n: ctx.data.n, leaked: ctx.token.reveal() };
      },
    };`,
      'slow.ts': `export default {
      description: 'Waits until cancelled (or 3 s)',
      token: { audience: ['svc'] },
      overlap: 'skip',
      async run(ctx) {
        await new Promise((resolve, reject) => {
          const t = setTimeout(resolve, 3000);
          ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); });
        });
        return { slept: true };
      },
    };`,
      'flaky.ts': `export default {
      token: { audience: ['svc'] },
      attempts: 2,
      backoff: { type: 'fixed', delay: 10 },
      async run(ctx) {
        if (ctx.run.attempt === 1) throw new Error('first attempt fails');
        return { attempt: ctx.run.attempt };
      },
    };`,
      'nightly.ts': `export default {
      description: 'Runs at 03:00 UTC',
      schedule: { cron: '0 0 3 * * *', tz: 'UTC' },
      token: { audience: ['svc'] },
      async run() { return {}; },
    };`,
    },
    env: { JOBSCOPE_PREFIX: 'api' },
    workers: ['hello', 'slow', 'flaky'],
    schedules: true,
    server: true,
  });
  ({ server: srv, logs } = fx);
});

after(async () => {
  await fx?.close();
});

/** What a job's queue holds in these states, as GET /api/jobs/:name counts it. */
async function held(name: string, states = ['waiting', 'active', 'completed', 'failed']): Promise<number> {
  const { counts } = await fx.api.job(name);
  return states.reduce((sum, k) => sum + (counts[k] as number), 0);
}

async function trigger(name: string, data: unknown): Promise<string> {
  const res = await srv.request(`/api/jobs/${name}/runs`, { method: 'POST', auth: ADMIN, json: { data } });
  assert.equal(res.status, 202, res.text);
  return res.body.runId as string;
}

describe('open routes', () => {
  test('healthz, readyz and the JWKS answer without credentials, with security headers and a request id', async () => {
    const health = await srv.request('/healthz');
    assert.equal(health.status, 200);
    assert.deepEqual(health.body, { ok: true });
    assert.equal(health.headers.get('x-content-type-options'), 'nosniff');
    assert.match(health.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    assert.equal(health.headers.get('x-frame-options'), 'SAMEORIGIN');
    assert.equal(health.headers.get('x-powered-by'), null);
    assert.match(health.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);

    const ready = await srv.request('/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, { ok: true, redis: 'up', jobs: 4 });

    const jwks = await srv.request('/.well-known/jwks.json');
    assert.equal(jwks.status, 200);
    assert.ok(jwks.body.keys.length >= 1);
    assert.equal(jwks.body.keys[0].d, undefined, 'no private key material');
  });

  test('a caller-supplied request id is echoed when it is safe, replaced when not', async () => {
    assert.equal((await srv.request('/healthz', { headers: { 'x-request-id': 'abc-123' } })).headers.get('x-request-id'), 'abc-123');
    const bad = (await srv.request('/healthz', { headers: { 'x-request-id': 'a b<script>' } })).headers.get('x-request-id');
    assert.notEqual(bad, 'a b<script>');
  });
});

describe('authentication', () => {
  const protectedRoutes: [string, string][] = [
    ['GET', '/api/jobs'],
    ['GET', '/api/me'],
    ['GET', '/api/tokens'],
    ['GET', '/api/workers'],
    ['GET', '/api/runs/hello:1'],
    ['POST', '/api/jobs/hello/runs'],
    ['POST', '/api/jobs/hello/pause'],
    ['POST', '/api/runs/hello:1/cancel'],
    ['GET', '/metrics'],
    ['GET', '/dashboard/'],
    ['GET', '/dashboard/app.js'],
    ['GET', '/dashboard/queues/'],
    ['GET', '/dashboard/queues/api/queues'],
    ['POST', '/dashboard/queues/api/queues/hello/add'],
  ];

  test('every protected route answers 401 with a Basic challenge without credentials', async () => {
    for (const [method, path] of protectedRoutes) {
      const res = await srv.request(path, { method, ...(method === 'POST' ? { json: { data: { n: 1 } } } : {}) });
      assert.equal(res.status, 401, `${method} ${path}`);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="jobscope"/, `${method} ${path}`);
      assert.equal(res.body.error, 'unauthorized');
    }
  });

  test('wrong password, unknown user and malformed headers are 401 too', async () => {
    for (const auth of [
      basic({ user: ADMIN.user, password: 'nope' }),
      basic({ user: 'mallory', password: ADMIN.password }),
      basic({ user: VIEWER.user, password: ADMIN.password }),
      'Bearer abc',
      'Basic !!!',
    ]) {
      assert.equal((await srv.request('/api/jobs', { auth })).status, 401, auth);
    }
  });

  test('the login limiter: a fixed window per address, blocking only at the limit and only until the window ends', () => {
    const limiter = new LoginLimiter(2, 1000);
    const t0 = 1_000_000;
    limiter.fail('a', t0);
    assert.equal(limiter.retryAfter('a', t0), 0, 'under the limit');
    limiter.fail('a', t0 + 100);
    assert.equal(limiter.retryAfter('a', t0 + 100), 1);
    assert.equal(limiter.retryAfter('b', t0 + 100), 0, 'other addresses are not affected');
    assert.equal(limiter.retryAfter('a', t0 + 999), 1);
    assert.equal(limiter.retryAfter('a', t0 + 1000), 0, 'the window is over');
    limiter.fail('a', t0 + 1000);
    assert.equal(limiter.retryAfter('a', t0 + 1000), 0, 'a new window starts counting from one');
  });

  test('/ and /dashboard redirect to the pages (which then ask for the login)', async () => {
    const root = await srv.request('/');
    assert.equal(root.status, 302);
    assert.equal(root.headers.get('location'), '/dashboard/');
    const dash = await srv.request('/dashboard', { auth: VIEWER });
    assert.equal(dash.status, 301);
    assert.equal(dash.headers.get('location'), '/dashboard/');
    assert.equal((await srv.request('/dashboard')).status, 401);
    const page = await srv.request('/dashboard/', { auth: VIEWER });
    assert.equal(page.status, 200);
    assert.match(page.text, /<script type="module" src="app.js"><\/script>/);
    assert.equal((await srv.request('/dashboard/nope.html', { auth: VIEWER })).status, 404);
  });

  test('GET /api/me names the login and its role', async () => {
    assert.deepEqual((await srv.request('/api/me', { auth: ADMIN })).body, { user: 'admin', role: 'admin' });
    assert.deepEqual((await srv.request('/api/me', { auth: VIEWER })).body, { user: 'viewer', role: 'viewer' });
  });

  test('failed logins are limited per address: 429 with Retry-After, even for the right password; no-credential requests do not count', async () => {
    const limited = await fx.startServer({ loginLimit: { max: 3, windowMs: 60_000 } });
    try {
      for (let i = 0; i < 5; i++) assert.equal((await limited.request('/api/jobs')).status, 401, 'asking for credentials is not a failure');
      assert.equal((await limited.request('/api/jobs', { auth: ADMIN })).status, 200);
      for (let i = 0; i < 3; i++) {
        assert.equal((await limited.request('/api/jobs', { auth: { user: 'admin', password: `guess-${i}` } })).status, 401);
      }
      const blocked = await limited.request('/api/jobs', { auth: { user: 'admin', password: 'guess-4' } });
      assert.equal(blocked.status, 429);
      assert.equal(blocked.body.error, 'too_many_attempts');
      const retryAfter = Number(blocked.headers.get('retry-after'));
      assert.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After ${retryAfter}`);
      assert.equal((await limited.request('/api/jobs', { auth: ADMIN })).status, 429, 'blocked even with the right password');
      assert.equal((await limited.request('/dashboard/', { auth: ADMIN })).status, 429, 'the dashboard shares the limit');
      assert.equal((await limited.request('/healthz')).status, 200, 'open routes stay open');
    } finally {
      await limited.close();
    }
    // Another server (its own limiter) is not affected.
    assert.equal((await srv.request('/api/jobs', { auth: ADMIN })).status, 200);
  });
});

describe('jobs', () => {
  test('GET /api/jobs lists every job with schedule, next fire times, paused, counts and last run', async () => {
    for (const auth of [ADMIN, VIEWER]) {
      const res = await srv.request('/api/jobs', { auth });
      assert.equal(res.status, 200);
      const byName = new Map((res.body as { name: string }[]).map((j) => [j.name, j]));
      assert.deepEqual([...byName.keys()].sort(), ['flaky', 'hello', 'nightly', 'slow']);
      const nightly = res.body.find((j: { name: string }) => j.name === 'nightly');
      assert.deepEqual(nightly.schedule, { cron: '0 0 3 * * *', tz: 'UTC' });
      assert.equal(nightly.scheduleText, 'cron 0 0 3 * * * (UTC)');
      assert.equal(nightly.nextRuns.length, 5);
      for (const t of nightly.nextRuns) assert.match(t, /T03:00:00\.000Z$/);
      assert.equal(nightly.paused, false);
      const hello = res.body.find((j: { name: string }) => j.name === 'hello');
      assert.equal(hello.description, 'Says hello');
      assert.equal(hello.schedule, null);
      assert.deepEqual(hello.nextRuns, []);
      assert.equal(hello.params.properties.n.maximum, 5);
      assert.deepEqual(hello.audience, ['svc']);
      assert.deepEqual(hello.scope, ['hello:say']);
      for (const k of ['waiting', 'active', 'completed', 'failed']) assert.equal(typeof hello.counts[k], 'number');
    }
  });

  test('GET /api/jobs/:name and /api/jobs/:name/runs; unknown job 404', async () => {
    const runId = await trigger('hello', { n: 1 });
    await fx.wait(runId);
    const one = await srv.request('/api/jobs/hello', { auth: VIEWER });
    assert.equal(one.status, 200);
    assert.equal(one.body.lastRun.runId, runId);
    assert.equal(one.body.lastRun.state, 'completed');
    assert.ok(one.body.counts.completed >= 1);
    const runs = await srv.request('/api/jobs/hello/runs?limit=5', { auth: VIEWER });
    assert.equal(runs.status, 200);
    assert.equal(runs.body[0].runId, runId);
    assert.ok(runs.body.length <= 5);
    for (const path of ['/api/jobs/nope', '/api/jobs/nope/runs']) {
      const res = await srv.request(path, { auth: ADMIN });
      assert.equal(res.status, 404, path);
      assert.equal(res.body.error, 'unknown_job');
    }
  });

  test('POST /api/jobs/:name/runs: 202 with a run id; the run completes with its logs, result and claims', async () => {
    const runId = await trigger('hello', { n: 3, who: 'api' });
    assert.match(runId, /^hello:\d+$/);
    await fx.wait(runId);
    const res = await srv.request(`/api/runs/${encodeURIComponent(runId)}`, { auth: VIEWER });
    assert.equal(res.status, 200);
    const run = res.body;
    assert.equal(run.runId, runId);
    assert.equal(run.job, 'hello');
    assert.equal(run.state, 'completed');
    assert.equal(run.attempts, 1);
    assert.equal(run.trigger, 'api');
    assert.equal(run.result.n, 3);
    const manual = await srv.request('/api/jobs/hello/runs', { method: 'POST', auth: ADMIN, json: { data: { n: 0 }, trigger: 'manual' } });
    assert.equal((await fx.wait(manual.body.runId)).trigger, 'manual');
    assert.equal(run.error, null);
    assert.equal(run.logs[0], 'hello api x3');
    for (const k of ['createdAt', 'startedAt', 'finishedAt']) assert.ok(!Number.isNaN(Date.parse(run[k])), k);
    assert.equal(run.claims.length, 1);
    const c = run.claims[0];
    assert.equal(c.sub, 'job:hello');
    assert.deepEqual(c.aud, ['svc']);
    assert.equal(c.scope, 'hello:say');
    assert.equal(c.run, runId);
    assert.equal(c.att, 1);
    assert.match(c.jti, /^[0-9a-f-]{36}$/);
    assert.ok(c.exp > c.iat);
    assert.doesNotMatch(res.text, JWT_LIKE, 'the raw token the job logged and returned is not in the answer');
  });

  test('a retried run lists the claims of each attempt: a fresh token (jti) per attempt', async () => {
    const runId = await trigger('flaky', {});
    const report = await fx.wait(runId);
    assert.equal(report.state, 'completed');
    const run = (await srv.request(`/api/runs/${runId}`, { auth: VIEWER })).body;
    assert.equal(run.attempts, 2);
    assert.deepEqual(
      run.claims.map((c: { att: number }) => c.att),
      [1, 2],
    );
    assert.notEqual(run.claims[0].jti, run.claims[1].jti);
    assert.ok(run.claims.every((c: { run: string; sub: string }) => c.run === runId && c.sub === 'job:flaky'));
  });

  test('400 with the schema errors; 400 for a body that is not an object or not JSON; 404 unknown job; 413 over the limit', async () => {
    const bad = await srv.request('/api/jobs/hello/runs', { method: 'POST', auth: ADMIN, json: { data: { n: 9, extra: true } } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error, 'invalid_params');
    const paths = bad.body.issues.map((i: { path: string }) => i.path);
    assert.ok(paths.includes('/n'), JSON.stringify(bad.body.issues));
    assert.ok(bad.body.issues.every((i: { message: string }) => typeof i.message === 'string' && i.message.length > 0));

    const missing = await srv.request('/api/jobs/hello/runs', { method: 'POST', auth: ADMIN, json: {} });
    assert.equal(missing.status, 400);
    assert.match(JSON.stringify(missing.body.issues), /n/);

    const notObject = await srv.request('/api/jobs/hello/runs', { method: 'POST', auth: ADMIN, json: [1, 2] });
    assert.equal(notObject.status, 400);
    assert.equal(notObject.body.error, 'bad_request');

    const badTrigger = await srv.request('/api/jobs/hello/runs', {
      method: 'POST',
      auth: ADMIN,
      json: { data: { n: 1 }, trigger: 'schedule' },
    });
    assert.equal(badTrigger.status, 400);
    assert.match(badTrigger.body.message, /trigger: must be "api" or "manual"/);

    const notJson = await srv.request('/api/jobs/hello/runs', { method: 'POST', auth: ADMIN, body: '{"data": ' });
    assert.equal(notJson.status, 400);
    assert.equal(notJson.body.error, 'bad_json');

    const unknown = await srv.request('/api/jobs/nope/runs', { method: 'POST', auth: ADMIN, json: { data: {} } });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error, 'unknown_job');
    assert.match(unknown.body.message, /known jobs: flaky, hello, nightly, slow/);

    const big = await srv.request('/api/jobs/hello/runs', {
      method: 'POST',
      auth: ADMIN,
      json: { data: { n: 1, who: 'x'.repeat(150_000) } },
    });
    assert.equal(big.status, 413);
    assert.equal(big.body.error, 'too_large');
    assert.equal((await fx.api.job('hello')).counts.waiting, 0, 'nothing was enqueued');
  });

  test('409 when overlap: skip refuses a trigger; cancel of an active run (its token revoked); 409 for cancelling a finished run', async () => {
    const runId = await trigger('slow', {});
    await fx.waitFor(runId, (r) => r.state === 'active', 5000, 'slow to start');

    const skipped = await srv.request('/api/jobs/slow/runs', { method: 'POST', auth: ADMIN, json: { data: {} } });
    assert.equal(skipped.status, 409);
    assert.equal(skipped.body.error, 'overlap_skipped');

    // Its token is live and listed (metadata only), and matches the claims on the run page.
    await until(async () => (await fx.api.tokens()).some((t) => t.run === runId), 5000, 'the token');
    const tokens = await srv.request('/api/tokens', { auth: VIEWER });
    assert.equal(tokens.status, 200);
    const mine = tokens.body.find((t: { run: string }) => t.run === runId);
    assert.ok(mine, JSON.stringify(tokens.body));
    assert.deepEqual(Object.keys(mine).sort(), ['att', 'aud', 'exp', 'job', 'jti', 'run', 'scope']);
    assert.equal(mine.job, 'slow');
    const run = await srv.request(`/api/runs/${runId}`, { auth: VIEWER });
    assert.equal(run.body.state, 'active');
    assert.equal(run.body.claims[0].jti, mine.jti);

    const viewerCancel = await srv.request(`/api/runs/${runId}/cancel`, { method: 'POST', auth: VIEWER });
    assert.equal(viewerCancel.status, 403);
    const cancel = await srv.request(`/api/runs/${runId}/cancel`, { method: 'POST', auth: ADMIN });
    assert.equal(cancel.status, 200);
    assert.deepEqual(cancel.body, { runId, outcome: 'signalled' });
    const report = await fx.wait(runId, 5000);
    assert.equal(report.state, 'failed');
    assert.match(report.error ?? '', /cancel/);
    const after = await srv.request('/api/tokens', { auth: ADMIN });
    assert.ok(!after.body.some((t: { run: string }) => t.run === runId), 'the token is gone');

    const again = await srv.request(`/api/runs/${runId}/cancel`, { method: 'POST', auth: ADMIN });
    assert.equal(again.status, 409);
    assert.equal(again.body.error, 'run_finished');
  });

  test('runs: 404 for unknown or malformed run ids', async () => {
    for (const id of ['hello:999999', 'nope:1', 'garbage']) {
      const res = await srv.request(`/api/runs/${id}`, { auth: ADMIN });
      assert.equal(res.status, 404, id);
      assert.equal(res.body.error, 'unknown_run');
      assert.equal((await srv.request(`/api/runs/${id}/cancel`, { method: 'POST', auth: ADMIN })).status, 404, id);
    }
  });

  test('pause and resume: admin only, reflected in /api/jobs and the queue; 404 for an unknown job', async () => {
    assert.equal((await srv.request('/api/jobs/nightly/pause', { method: 'POST', auth: VIEWER })).status, 403);
    const paused = await srv.request('/api/jobs/nightly/pause', { method: 'POST', auth: ADMIN });
    assert.equal(paused.status, 200);
    assert.deepEqual(paused.body, { name: 'nightly', paused: true });
    let nightly = (await srv.request('/api/jobs/nightly', { auth: ADMIN })).body;
    assert.equal(nightly.paused, true);
    assert.deepEqual(nightly.nextRuns, []);
    assert.equal(await fx.queue('nightly').isPaused(), true);
    assert.equal(await fx.queue('nightly').getJobScheduler('nightly'), undefined);

    assert.equal((await srv.request('/api/jobs/nightly/resume', { method: 'POST', auth: VIEWER })).status, 403);
    const resumed = await srv.request('/api/jobs/nightly/resume', { method: 'POST', auth: ADMIN });
    assert.equal(resumed.status, 200);
    assert.deepEqual(resumed.body, { name: 'nightly', paused: false });
    nightly = (await srv.request('/api/jobs/nightly', { auth: ADMIN })).body;
    assert.equal(nightly.paused, false);
    assert.equal(nightly.nextRuns.length, 5);

    for (const action of ['pause', 'resume']) {
      const res = await srv.request(`/api/jobs/nope/${action}`, { method: 'POST', auth: ADMIN });
      assert.equal(res.status, 404);
      assert.equal(res.body.error, 'unknown_job');
    }
  });

  test('the viewer can read everything and change nothing (403 on every mutation)', async () => {
    for (const path of ['/api/jobs', '/api/jobs/hello', '/api/jobs/hello/runs', '/api/tokens', '/api/workers', '/metrics', '/dashboard/']) {
      assert.equal((await srv.request(path, { auth: VIEWER })).status, 200, path);
    }
    const before = await held('hello');
    const res = await srv.request('/api/jobs/hello/runs', { method: 'POST', auth: VIEWER, json: { data: { n: 1 } } });
    assert.equal(res.status, 403);
    assert.equal(res.body.error, 'forbidden');
    assert.equal(await held('hello'), before);
  });

  test('GET /api/workers/connections lists the connected workers per job', async () => {
    const res = await srv.request('/api/workers/connections', { auth: VIEWER });
    assert.equal(res.status, 200);
    const byJob = new Map((res.body as { job: string; workers: unknown[] }[]).map((q) => [q.job, q.workers]));
    assert.equal(byJob.get('hello')?.length, 1);
    assert.equal(byJob.get('slow')?.length, 1);
    assert.equal(byJob.get('nightly')?.length, 0, 'this test starts no worker for nightly');
    const w = byJob.get('hello')![0] as { addr: string; age: number };
    assert.match(w.addr, /^127\.0\.0\.1:\d+$/);
    assert.equal(typeof w.age, 'number');
  });

  test('unknown routes are JSON 404s', async () => {
    const api = await srv.request('/api/nothing', { auth: ADMIN });
    assert.equal(api.status, 404);
    assert.equal(api.body.error, 'not_found');
    const other = await srv.request('/nothing');
    assert.equal(other.status, 404);
    assert.equal(other.body.error, 'not_found');
  });
});

describe('Bull Board', () => {
  const add = (auth: typeof ADMIN, data: unknown, name = 'whatever') =>
    srv.request('/dashboard/queues/api/queues/hello/add', { method: 'POST', auth, json: { name, data, options: { attempts: 50 } } });

  test('its page and API sit behind the login; viewers get the read-only board', async () => {
    const page = await srv.request('/dashboard/queues/', { auth: ADMIN });
    assert.equal(page.status, 200);
    assert.match(page.text, /<title>jobscope<\/title>/);
    const viewerPage = await srv.request('/dashboard/queues/', { auth: VIEWER });
    assert.match(viewerPage.text, /<title>jobscope \(read-only\)<\/title>/);
    const queues = await srv.request('/dashboard/queues/api/queues', { auth: VIEWER });
    assert.equal(queues.status, 200);
    const hello = queues.body.queues.find((q: { name: string }) => q.name === 'hello');
    assert.equal(hello.description, 'Says hello');
    assert.equal(hello.readOnlyMode, true);
    const schema = await srv.request('/dashboard/queues/api/queues/hello/job-data-schema', { auth: ADMIN });
    assert.equal(schema.status, 200);
    assert.match(schema.text, /"maximum":5/);
  });

  test('"Add job" goes through the params validation: 400 with reasons, nothing enqueued', async () => {
    const before = await held('hello');
    const res = await add(ADMIN, { n: 'seven' });
    assert.equal(res.status, 400);
    assert.equal(res.body.code, 'invalid_params');
    assert.equal(res.body.issues[0].path, '/n');
    assert.equal((await add(ADMIN, undefined)).status, 400, 'missing data is checked too');
    assert.equal(await held('hello'), before);
  });

  test('a valid add runs as a manual trigger with jobscope job options (not the posted ones)', async () => {
    const res = await add(ADMIN, { n: 2, who: 'board' });
    assert.equal(res.status, 200, res.text);
    const runId = `hello:${res.body.job.id}`;
    assert.equal(res.body.job.externalUrl.href, `/dashboard/run.html?id=${encodeURIComponent(runId)}`, 'links to the Run page');
    const report = await fx.wait(runId);
    assert.equal(report.state, 'completed');
    assert.equal(report.trigger, 'manual');
    const job = (await fx.queue('hello').getJob(res.body.job.id))!;
    assert.equal(job.name, 'manual');
    assert.equal(job.opts.attempts, 1, 'the posted attempts: 50 was ignored');
  });

  test('the read-only board refuses adds; update-data and retries of invalid data are refused with reasons', async () => {
    const viewerAdd = await add(VIEWER, { n: 1 });
    assert.equal(viewerAdd.status, 403, 'a viewer is answered as the API answers it');
    assert.equal(viewerAdd.body.code, 'forbidden');

    // A run whose data bypassed validation (as an older schema's runs would): the worker refuses it...
    const raw = await fx.queue('hello').add('api', { n: 'old' }, { attempts: 1 });
    const report = await fx.wait(`hello:${raw.id}`);
    assert.equal(report.state, 'failed');
    assert.match(report.error ?? '', /invalid data/);
    // ...and Bull Board cannot retry it, or retry all failed runs, or edit data into another invalid shape.
    const retry = await srv.request(`/dashboard/queues/api/queues/hello/${raw.id}/retry`, { method: 'PUT', auth: ADMIN });
    assert.equal(retry.status, 400);
    assert.equal(retry.body.code, 'invalid_params');
    const retryAll = await srv.request('/dashboard/queues/api/queues/hello/retry/failed', { method: 'PUT', auth: ADMIN });
    assert.equal(retryAll.status, 400);
    assert.ok(retryAll.body.issues.some((i: { runId: string }) => i.runId === `hello:${raw.id}`));
    const edit = await srv.request(`/dashboard/queues/api/queues/hello/${raw.id}/update-data`, {
      method: 'PATCH',
      auth: ADMIN,
      json: { jobData: { n: 100 } },
    });
    assert.equal(edit.status, 400);
    assert.equal((await fx.api.run(`hello:${raw.id}`)).data.n, 'old');
    assert.equal((await fx.run(`hello:${raw.id}`)).state, 'failed', 'still failed, not retried');

    // A valid edit then makes it retriable.
    const fix = await srv.request(`/dashboard/queues/api/queues/hello/${raw.id}/update-data`, {
      method: 'PATCH',
      auth: ADMIN,
      json: { jobData: { n: 4 } },
    });
    assert.equal(fix.status, 200, fix.text);
    const retried = await srv.request(`/dashboard/queues/api/queues/hello/${raw.id}/retry`, { method: 'PUT', auth: ADMIN });
    assert.equal(retried.status, 204, retried.text);
    await fx.waitFor(`hello:${raw.id}`, (r) => r.state === 'completed', 10_000, 'the retried run');
  });

  test("pause/resume from Bull Board are jobscope's (schedule too); the read-only board refuses them", async () => {
    assert.equal((await srv.request('/dashboard/queues/api/queues/nightly/pause', { method: 'PUT', auth: VIEWER })).status, 403);
    assert.equal((await srv.request('/dashboard/queues/api/queues/pause', { method: 'PUT', auth: VIEWER })).status, 403);
    assert.equal((await fx.api.job('nightly')).paused, false, 'pause-all on the read-only board paused nothing');
    assert.equal(await fx.queue('nightly').isPaused(), false);

    assert.equal((await srv.request('/dashboard/queues/api/queues/nightly/pause', { method: 'PUT', auth: ADMIN })).status, 200);
    assert.equal((await fx.api.job('nightly')).paused, true);
    assert.equal(await fx.queue('nightly').getJobScheduler('nightly'), undefined, 'the schedule stopped too');
    assert.equal((await srv.request('/api/jobs/nightly', { auth: ADMIN })).body.paused, true);
    assert.equal((await srv.request('/dashboard/queues/api/queues/nightly/resume', { method: 'PUT', auth: ADMIN })).status, 200);
    assert.equal((await fx.api.job('nightly')).paused, false);
    assert.ok(await fx.queue('nightly').getJobScheduler('nightly'), 'the schedule is back');
  });

  test('job data, results and logs shown by Bull Board carry no token', async () => {
    const res = await add(ADMIN, { n: 1 });
    const id = res.body.job.id as string;
    await fx.wait(`hello:${id}`);
    const job = await srv.request(`/dashboard/queues/api/queues/hello/${id}`, { auth: ADMIN });
    assert.equal(job.status, 200);
    const jobLogs = await srv.request(`/dashboard/queues/api/queues/hello/${id}/logs`, { auth: ADMIN });
    assert.equal(jobLogs.status, 200);
    assert.match(jobLogs.text, /my token is/);
    const list = await srv.request('/dashboard/queues/api/queues?activeQueue=hello&status=completed', { auth: ADMIN });
    for (const text of [job.text, jobLogs.text, list.text]) assert.doesNotMatch(text, JWT_LIKE);
  });
});

describe('no secrets leave the server', () => {
  test('no answer this file received contains a token; the request log has request ids and no credentials', async () => {
    assert.ok(srv.seen.length > 50, `${srv.seen.length} answers checked`);
    for (const text of srv.seen) assert.doesNotMatch(text, JWT_LIKE);
    const lines = logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const requests = lines.filter((l) => l.msg === 'request');
    assert.ok(requests.length > 50);
    assert.ok(requests.every((l) => typeof l.reqId === 'string' && typeof l.status === 'number' && typeof l.path === 'string'));
    assert.ok(requests.some((l) => l.path === '/api/jobs/hello/runs' && l.status === 202 && l.user === 'admin'));
    assert.ok(lines.some((l) => l.msg === 'failed login'));
    for (const secret of [ADMIN.password, VIEWER.password, basic(ADMIN).slice(6), basic(VIEWER).slice(6)]) {
      assert.ok(!logs.text.includes(secret), 'a credential reached the log');
    }
    assert.doesNotMatch(logs.text, JWT_LIKE);
  });
});
