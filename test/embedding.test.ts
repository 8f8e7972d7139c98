// Embedding against a real Redis: createWorker hosts workers inside this process (plain options, no environment) and
// shows the host only status() and close(); createClient triggers and follows runs from "application code": with the
// definitions it imports (typed), or with none (the runners' published definitions), with the API's checks and options.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { createClient, createWorker, defineJob, type EmbeddedWorker } from '../src/index.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { ROOT } from './helpers/runtime.ts';
import { until } from './helpers/wait.ts';

const greet = defineJob<{ name: string; times?: number }, { greeting: string; aud: string[] }>({
  params: {
    type: 'object',
    properties: { name: { type: 'string' }, times: { type: 'integer', minimum: 1, maximum: 3 } },
    required: ['name'],
    additionalProperties: false,
  },
  token: { audience: ['greeter'] },
  overlap: 'skip',
  async run(ctx) {
    const { aud } = await ctx.service('greeter').get('hello').json<{ aud: string[] }>();
    await new Promise((r) => setTimeout(r, 150));
    return { greeting: `hello ${ctx.data.name}`.repeat(ctx.data.times ?? 1), aud };
  },
});
const fails = defineJob({
  token: { audience: ['greeter'] },
  async run() {
    throw new Error('no luck');
  },
});
const jobs = { greet, fails };

let redis: TestRedis;
let service: http.Server;
let embedded: EmbeddedWorker;
const prefix = 'emb';

before(async () => {
  redis = await startRedis();
  service = http.createServer((req, res) => {
    const claims = JSON.parse(Buffer.from((req.headers.authorization ?? '').split('.')[1] ?? '', 'base64url').toString() || '{}') as {
      aud?: string[];
    };
    res.setHeader('content-type', 'application/json').end(JSON.stringify({ aud: claims.aud ?? null }));
  });
  await new Promise<void>((r) => service.listen(0, '127.0.0.1', r));
  embedded = await createWorker({
    jobs,
    redisUrl: redis.url,
    prefix,
    services: { greeter: `http://127.0.0.1:${(service.address() as AddressInfo).port}` },
    stateDir: path.join(ROOT, '.jobscope', 'test-tmp', 'embedding-state'),
    logLevel: 'silent',
  });
});
after(async () => {
  await embedded?.close();
  service?.close();
  await redis?.destroy();
});

describe('createClient with the imported definitions', () => {
  test('trigger and wait: the typed result, the outcome, the run with its token claims', async () => {
    const client = createClient({ redisUrl: redis.url, prefix, jobs });
    try {
      const done = await client.trigger('greet', { name: 'ada', times: 2 }, { wait: 10_000 });
      assert.equal(done.outcome, 'completed');
      assert.equal(done.result?.greeting, 'hello adahello ada');
      assert.deepEqual(done.result?.aud, ['greeter']);
      const run = await client.run(done.runId);
      assert.equal(run.trigger, 'api');
      assert.equal(run.claims.length, 1);
      assert.equal(run.claims[0].sub, 'job:greet');
      const failed = await client.trigger('fails', {}, { wait: true });
      assert.equal(failed.outcome, 'failed');
      assert.equal(failed.error, 'no luck');
      // @ts-expect-error -- data is typed by the job's definition: `name` is required
      await assert.rejects(client.trigger('greet', { times: 1 }), /invalid data for job "greet": \/ must have required property 'name'/);
      // @ts-expect-error -- and unknown jobs are a type error too
      await assert.rejects(client.trigger('nope', {}), /unknown job "nope"/);
    } finally {
      await client.close();
    }
  });
});

describe('createClient with no jobs: what the runners published', () => {
  test('same checks and options as the API: params, overlap skip, idempotency key, delay, cancel', async () => {
    const client = createClient({ redisUrl: redis.url, prefix });
    try {
      await assert.rejects(client.trigger('greet', { name: 1 }), /invalid data for job "greet": \/name must be string/);
      const first = await client.trigger('greet', { name: 'bo' });
      await assert.rejects(client.trigger('greet', { name: 'cy' }), (err: Error & { blocking?: string }) => err.blocking === first.runId);
      const done = await client.trigger('fails', {}, { key: 'nightly-2026-12-03' });
      const again = await client.trigger('fails', {}, { key: 'nightly-2026-12-03' });
      assert.deepEqual(again, { runId: done.runId, existing: true });
      const later = await client.trigger('fails', {}, { delay: '1h' });
      assert.equal((await client.run(later.runId)).state, 'delayed');
      assert.deepEqual(await client.cancel(later.runId), { runId: later.runId, outcome: 'removed' });
      await assert.rejects(client.trigger('never-published', {}), /unknown job "never-published"; known jobs: .*greet/);
    } finally {
      await client.close();
    }
  });
});

describe('createWorker: what the host sees', () => {
  test('status(): ready, the jobs served, the runs active now; nothing else on the object', async () => {
    assert.deepEqual(Object.keys(embedded).sort(), ['close', 'status']);
    // Earlier runs (greet takes 150 ms) are over first.
    await until(async () => (await embedded.status()).active.length === 0, 10_000, 'the earlier runs to finish');
    const idle = await embedded.status();
    assert.equal(idle.ready, true);
    assert.equal(idle.reason, undefined);
    assert.deepEqual([...idle.jobs].sort(), ['fails', 'greet']);
    assert.equal(idle.redis.up, true);
    // Its id is the one its heartbeat is listed under in the worker registry (GET /api/workers, the Workers page).
    const admin = new Redis(redis.url);
    try {
      const beat = JSON.parse((await admin.hget(`${prefix}:workers`, idle.id)) ?? 'null') as { jobs: string[] } | null;
      assert.deepEqual(beat?.jobs.sort(), ['fails', 'greet']);
    } finally {
      admin.disconnect();
    }
    const client = createClient({ redisUrl: redis.url, prefix, jobs });
    try {
      const { runId } = await client.trigger('greet', { name: 'st' });
      await until(async () => (await embedded.status()).active.includes(runId), 5000, 'the run to be listed as active');
      await until(async () => (await client.run(runId)).outcome !== null, 10_000, 'the run to finish');
      assert.equal((await client.run(runId)).outcome, 'completed');
      await until(async () => !(await embedded.status()).active.includes(runId), 5000, 'the run to leave the active list');
    } finally {
      await client.close();
    }
  });

  test('Redis down: not ready, with the reason; ready again once it is back; closed: not ready', async () => {
    await redis.stop();
    try {
      await until(async () => !(await embedded.status()).ready, 5000, 'status() to say not ready');
      const down = await embedded.status();
      assert.equal(down.redis.up, false);
      assert.match(down.reason ?? '', /^Redis (unreachable for \d+ s|did not answer a PING)/);
      assert.equal(typeof down.redis.reason, 'string');
    } finally {
      await redis.start();
    }
    await until(async () => (await embedded.status()).ready, 15_000, 'status() to say ready again');
    assert.equal((await embedded.status()).redis.up, true);
    // And it does run again (its workers reconnected) before it is closed.
    const client = createClient({ redisUrl: redis.url, prefix, jobs });
    try {
      assert.equal((await client.trigger('greet', { name: 'back' }, { wait: 20_000 })).outcome, 'completed');
    } finally {
      await client.close();
    }
    await embedded.close();
    const closed = await embedded.status();
    assert.equal(closed.ready, false);
    assert.equal(closed.reason, 'closed');
    assert.deepEqual(closed.active, []);
  });
});
