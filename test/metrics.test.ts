// /metrics (Prometheus text, behind the login) after real runs, and /readyz when Redis goes away and comes back.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Runtime } from '../src/runtime/runtime.ts';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';
import { TestServer, VIEWER } from './helpers/server.ts';

let fx: Fixture;
let runtime: Runtime;
let srv: TestServer;

before(async () => {
  fx = await jobscopeFixture({
    jobs: {
      'ok.ts': `export default { token: { audience: ['svc'] }, async run() { await new Promise((r) => setTimeout(r, 30)); return 1; } };`,
      'boom.ts': `export default { token: { audience: ['svc'] }, attempts: 2, backoff: { type: 'fixed', delay: 10 },
      async run() { throw new Error('boom'); } };`,
      'idle.ts': `export default { token: { audience: ['svc'] }, async run() { return 0; } };`,
    },
    env: { JOBSCOPE_PREFIX: 'met' },
    workers: ['ok', 'boom'],
    server: true,
  });
  ({ runtime, server: srv } = fx);
});

after(async () => {
  await fx?.close();
});

/** The value of one sample line (`name{labels} value`), or undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(?:\{(.*)\})? (.+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function scrape(): Promise<string> {
  const res = await srv.request('/metrics', { auth: VIEWER });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return res.text;
}

describe('/metrics', () => {
  test('requires the login', async () => {
    const res = await srv.request('/metrics');
    assert.equal(res.status, 401);
    assert.doesNotMatch(res.text, /jobscope_/);
  });

  test('before any run: zero counters, and the gauges read from Redis', async () => {
    const text = await scrape();
    assert.equal(sample(text, 'jobscope_tokens_minted_total', { job: 'ok' }), 0);
    assert.equal(sample(text, 'jobscope_tokens_live', { job: 'ok' }), 0);
    assert.equal(sample(text, 'jobscope_queue_jobs', { job: 'idle', state: 'waiting' }), 0);
    assert.equal(sample(text, 'jobscope_redis_up'), 1);
    assert.equal(sample(text, 'jobscope_runs_total', { job: 'ok', outcome: 'completed' }), undefined);
  });

  test('after runs: runs by job and outcome, durations, tokens minted and revoked, queue depth, live tokens', async () => {
    const ok = await Promise.all([1, 2, 3].map(() => fx.trigger('ok')));
    const boom = await fx.trigger('boom');
    for (const runId of [...ok, boom]) await fx.wait(runId);
    // Runs of a job without a worker in this process wait in its queue: the depth gauge sees them.
    await fx.trigger('idle');
    await fx.trigger('idle');
    // 'run:end' is emitted just before BullMQ records the outcome, and revocation finishes in `finally`: wait for the counters.
    let text = '';
    await until(
      async () => {
        text = await scrape();
        return (
          sample(text, 'jobscope_tokens_revoked_total', { job: 'boom' }) === 2 &&
          sample(text, 'jobscope_tokens_revoked_total', { job: 'ok' }) === 3
        );
      },
      5000,
      'the revocations to be counted',
    );
    assert.equal(sample(text, 'jobscope_runs_total', { job: 'ok', outcome: 'completed' }), 3);
    assert.equal(sample(text, 'jobscope_runs_total', { job: 'boom', outcome: 'failed' }), 2, 'one per failed attempt');
    assert.equal(sample(text, 'jobscope_run_duration_seconds_count', { job: 'ok', outcome: 'completed' }), 3);
    const sum = sample(text, 'jobscope_run_duration_seconds_sum', { job: 'ok', outcome: 'completed' })!;
    assert.ok(sum >= 0.09 && sum < 10, `duration sum ${sum}`);
    assert.equal(sample(text, 'jobscope_run_duration_seconds_bucket', { job: 'ok', outcome: 'completed', le: '+Inf' }), 3);
    assert.equal(sample(text, 'jobscope_tokens_minted_total', { job: 'ok' }), 3);
    assert.equal(sample(text, 'jobscope_tokens_minted_total', { job: 'boom' }), 2);
    assert.equal(sample(text, 'jobscope_tokens_live', { job: 'ok' }), 0);
    assert.equal(sample(text, 'jobscope_queue_jobs', { job: 'ok', state: 'completed' }), 3);
    assert.equal(sample(text, 'jobscope_queue_jobs', { job: 'boom', state: 'failed' }), 1);
    assert.equal(sample(text, 'jobscope_queue_jobs', { job: 'idle', state: 'waiting' }), 2);
    assert.equal(sample(text, 'jobscope_job_paused', { job: 'idle' }), 0);
    assert.ok(sample(text, 'jobscope_process_resident_memory_bytes')! > 0, 'default process metrics');
  });

  test('live tokens gauge counts a running run', async () => {
    await fx.api.post('/api/jobs/idle/pause'); // paused state shows up too
    const text = await scrape();
    assert.equal(sample(text, 'jobscope_job_paused', { job: 'idle' }), 1);
    await fx.api.post('/api/jobs/idle/resume');
    // A token registered by another process counts as well: the gauge reads Redis, not this process's workers.
    const { claims } = await runtime.minter.mint({
      job: 'idle',
      run: 'idle:x',
      attempt: 1,
      audience: ['svc'],
      scope: [],
      lifetimeMs: 60_000,
    });
    assert.equal(sample(await scrape(), 'jobscope_tokens_live', { job: 'idle' }), 1);
    await runtime.minter.revoke(claims.jti);
    assert.equal(sample(await scrape(), 'jobscope_tokens_live', { job: 'idle' }), 0);
  });
});

describe('/readyz', () => {
  // A server-only process (as `jobscope server`) on its own Redis: stopping that Redis leaves the workers above alone
  // (a BullMQ Worker whose Redis restarted can take long to close, which would only slow this file down).
  test('503 while Redis is down (answering at once), 200 again once it is back; /metrics keeps answering', async () => {
    const serverOnly = await jobscopeFixture({ dir: fx.dir, env: { JOBSCOPE_PREFIX: 'met2' }, server: true });
    const own = serverOnly.redisServer;
    const http = serverOnly.server;
    try {
      assert.equal((await http.request('/readyz')).status, 200);
      await own.stop();
      await until(async () => (await http.request('/readyz')).status === 503, 5000, 'readyz to fail');
      const started = Date.now();
      const down = await http.request('/readyz');
      assert.equal(down.status, 503);
      const { reason, ...rest } = down.body as { reason: string };
      assert.deepEqual(rest, { ok: false, redis: 'down', jobs: 3 });
      assert.match(reason, /^Redis unreachable for \d+ s \(\d+ reconnect attempts\)/);
      assert.ok(Date.now() - started < 1500, 'bounded');
      assert.equal((await http.request('/healthz')).status, 200, 'liveness does not depend on Redis');
      const scraped = Date.now();
      const res = await http.request('/metrics', { auth: VIEWER });
      assert.equal(res.status, 200);
      assert.equal(sample(res.text, 'jobscope_redis_up'), 0);
      assert.ok(Date.now() - scraped < 3000, 'a scrape during the outage answers in bounded time');

      await own.start();
      await until(async () => (await http.request('/readyz')).status === 200, 15_000, 'readyz to recover');
      assert.equal(sample((await http.request('/metrics', { auth: VIEWER })).text, 'jobscope_redis_up'), 1);
    } finally {
      await serverOnly.close();
    }
  });
});
