// The token-scoped runtime against a real redis-server and a real HTTP service on 127.0.0.1.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import jwt from 'jsonwebtoken';
import { Redis } from 'ioredis';
import type { Runtime } from '../src/runtime/runtime.ts';
import { jobscopeFixture, type Fixture } from './helpers/fixture.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import type { LogCapture } from './helpers/runtime.ts';
import { RecordingService } from './helpers/service.ts';

const PREFIX = 'rt';

const JOBS = {
  'call.ts': `
import { defineJob } from 'jobscope';
export default defineJob({
  description: 'calls svc',
  token: { audience: ['svc'], scope: ['dict:read', 'dict:write'] },
  params: { type: 'object', properties: { mode: { enum: ['ok', 'throw', 'hang', 'later'] }, n: { type: 'integer' }, base: { type: 'string' } }, required: ['mode'], additionalProperties: false },
  timeout: '1500ms',
  concurrency: 50,
  async run(ctx) {
    const res = await ctx.service('svc').get('echo', { headers: { 'x-run': ctx.run.id } }).json();
    // A continuation after a timer and a second request in parallel must still carry this run's token.
    await new Promise((r) => setTimeout(r, 5));
    await Promise.all([ctx.http.get(ctx.data.base + 'echo2', { headers: { 'x-run': ctx.run.id } }).catch(() => null)]);
    if (ctx.data.mode === 'throw') throw new Error('boom with ' + ctx.token.reveal());
    if (ctx.data.mode === 'hang') await new Promise(() => {});
    await ctx.log('log line with ' + ctx.token.reveal());
    await ctx.progress({ pct: 100, leaked: ctx.token.reveal() });
    return { jti: res.jti, leaked: ctx.token.reveal(), claims: ctx.token.claims, token: ctx.token };
  },
});`,
  'flaky.ts': `
export default {
  token: { audience: ['svc'] },
  attempts: 3,
  backoff: { type: 'fixed', delay: 50 },
  async run(ctx) {
    await ctx.service('svc').get('flaky', { headers: { 'x-run': ctx.run.id } });
    if (ctx.run.attempt < 3) throw new Error('not yet');
    return { attempt: ctx.run.attempt, trigger: ctx.run.trigger };
  },
};`,
  'nosvc.ts': `
export default {
  token: { audience: ['svc'] },
  async run(ctx) { await ctx.service('nope').get('x'); },
};`,
};

let redis: TestRedis;
let fx: Fixture;
let runtime: Runtime;
let logs: LogCapture;
let service: RecordingService;
let client: Redis;
const allTokens = new Set<string>();

before(async () => {
  // Redis and the service first: the service checks each token's liveness in Redis while its request is in flight.
  redis = await startRedis();
  client = new Redis(redis.url);
  service = await new RecordingService(client, PREFIX).start();
  fx = await jobscopeFixture({
    jobs: JOBS,
    redisServer: redis,
    env: { JOBSCOPE_PREFIX: PREFIX, JOBSCOPE_SERVICES: `svc=${service.url}` },
    workers: true,
  });
  ({ runtime, logs } = fx);
});

after(async () => {
  await fx.close();
  await service.stop();
  client.disconnect();
  await redis.destroy();
});

function requestsOf(runId: string) {
  return service.received.filter((r) => r.sentByRun === runId);
}

async function run(job: string, data: Record<string, unknown>) {
  return fx.wait(await fx.trigger(job, { ...data }));
}

describe('a run calling a real service', () => {
  for (const mode of ['ok', 'throw', 'hang'] as const) {
    test(`token is live during the request and revoked after the run (${mode})`, async () => {
      const report = await run('call', { mode });
      const reqs = requestsOf(report.runId);
      assert.equal(reqs.length, 1, 'the service got exactly one request from this run');
      const [req] = reqs;
      assert.ok(req.token, 'Authorization: Bearer carried a token');
      allTokens.add(req.token!);
      assert.equal(req.liveInRedis, true, 'the jti key existed while the request was in flight');
      // Lifetime is the timeout (1.5 s) plus a 30 s grace, set in milliseconds: never 1000x too long or too short.
      assert.ok(req.pttl > 29_000 && req.pttl <= 31_500, `PTTL ${req.pttl} ms`);
      const jti = req.claims!.jti as string;
      assert.equal(await client.exists(`${PREFIX}:token:${jti}`), 0, 'revoked after the run');
      if (mode === 'ok') assert.equal(report.state, 'completed');
      if (mode === 'throw') {
        assert.equal(report.state, 'failed');
        assert.match(report.error!, /^boom with \[redacted token\]$/);
      }
      if (mode === 'hang') {
        assert.equal(report.state, 'failed');
        assert.match(report.error!, /timed out after 1500 ms/);
      }
    });
  }

  test('the JWT has the claims and header of the contract and verifies with the runner key', async () => {
    const report = await run('call', { mode: 'ok' });
    const [req] = requestsOf(report.runId);
    const { header, payload } = jwt.verify(req.token!, runtime.keys.current.verifyKey, {
      algorithms: ['ES256'],
      complete: true,
    }) as jwt.Jwt & {
      payload: jwt.JwtPayload;
    };
    assert.deepEqual(header, { alg: 'ES256', typ: 'at+jwt', kid: runtime.keys.current.kid });
    assert.equal(payload.iss, 'jobscope');
    assert.equal(payload.sub, 'job:call');
    assert.deepEqual(payload.aud, ['svc']);
    assert.equal(payload.scope, 'dict:read dict:write');
    assert.match(payload.jti!, /^[0-9a-f-]{36}$/);
    assert.equal(payload.run, report.runId);
    assert.equal(payload.att, 1);
    assert.equal(payload.nbf, payload.iat);
    assert.ok(payload.exp! - payload.iat! >= 31 && payload.exp! - payload.iat! <= 32);
    // The handler's result had the token scrubbed, and ctx.token serialises as its claims only.
    const result = report.result as { jti: string; leaked: string; claims: { jti: string }; token: unknown };
    assert.equal(result.jti, payload.jti);
    assert.equal(result.leaked, '[redacted token]');
    assert.deepEqual(result.token, { claims: result.claims, all: [result.claims] });
    assert.ok(report.logs.some((l) => l === 'log line with [redacted token]'));
    assert.deepEqual(report.progress, { pct: 100, leaked: '[redacted token]' });
    allTokens.add(req.token!);
  });

  test('50 concurrent runs in one worker each send only their own token', async () => {
    service.delayMs = 40;
    try {
      const base = service.url + '/';
      const ids = await Promise.all(Array.from({ length: 50 }, (_, n) => fx.trigger('call', { mode: 'ok', n, base })));
      const reports = await Promise.all(ids.map((runId) => fx.wait(runId, 30_000)));
      const jtis = new Set<string>();
      for (const report of reports) {
        assert.equal(report.state, 'completed', JSON.stringify({ e: report.error, l: report.logs }));
        const reqs = requestsOf(report.runId);
        assert.equal(reqs.length, 2, `two requests from ${report.runId} (service and http)`);
        const runJtis = new Set(reqs.map((r) => r.claims!.jti as string));
        assert.equal(runJtis.size, 1, 'both requests of a run carry the same token');
        for (const r of reqs) {
          assert.equal(r.claims!.run, report.runId, 'the token belongs to the run that sent it');
          assert.equal(r.liveInRedis, true);
          allTokens.add(r.token!);
        }
        jtis.add([...runJtis][0]);
        assert.equal((report.result as { jti: string }).jti, [...runJtis][0]);
      }
      assert.equal(jtis.size, 50, '50 distinct tokens');
      // The runs really overlapped: otherwise this test would not prove isolation.
      assert.ok(service.maxInFlight >= 10, `at most ${service.maxInFlight} requests were in flight at once`);
    } finally {
      service.delayMs = 0;
    }
  });

  test('every attempt of a retried run gets a fresh token, revoked after each attempt', async () => {
    const report = await run('flaky', {});
    assert.equal(report.state, 'completed');
    assert.deepEqual(report.result, { attempt: 3, trigger: 'retry' });
    const reqs = requestsOf(report.runId);
    assert.deepEqual(
      reqs.map((r) => r.claims!.att),
      [1, 2, 3],
    );
    assert.equal(new Set(reqs.map((r) => r.claims!.jti)).size, 3);
    for (const r of reqs) {
      allTokens.add(r.token!);
      assert.equal(await client.exists(`${PREFIX}:token:${r.claims!.jti as string}`), 0);
    }
  });

  test('an unknown service name fails the run with the list of known services', async () => {
    const report = await run('nosvc', {});
    assert.equal(report.state, 'failed');
    assert.match(report.error!, /unknown service "nope"; known services: svc/);
  });

  test('a request through the clients outside any run fails loudly and sends nothing', async () => {
    const before = service.received.length;
    const got = runtime.clients.service('svc', 'call:1', new AbortController().signal);
    await assert.rejects(got.get('echo'), /outside a job run/);
    await assert.rejects(runtime.clients.http('call:1', new AbortController().signal).get(service.url + '/x'), /outside a job run/);
    assert.equal(service.received.length, before);
  });

  test('no token string anywhere in Redis or in the logs after the runs', async () => {
    assert.ok(allTokens.size >= 55, `collected ${allTokens.size} tokens`);
    const keys = await client.keys('*');
    assert.ok(keys.length > 0);
    let dump = '';
    for (const key of keys) {
      const type = await client.type(key);
      if (type === 'string') dump += await client.get(key);
      else if (type === 'hash') dump += JSON.stringify(await client.hgetall(key));
      else if (type === 'list') dump += JSON.stringify(await client.lrange(key, 0, -1));
      else if (type === 'set') dump += JSON.stringify(await client.smembers(key));
      else if (type === 'zset') dump += JSON.stringify(await client.zrange(key, '0', '-1'));
      else if (type === 'stream') dump += JSON.stringify(await client.xrange(key, '-', '+'));
      dump += '\n';
    }
    assert.ok(dump.includes('[redacted token]'), 'the dump contains the scrubbed results (the scan sees job data)');
    for (const token of allTokens) {
      assert.ok(!dump.includes(token), 'a token was found in Redis');
      assert.ok(!dump.includes(token.split('.')[2]), 'a token signature was found in Redis');
      assert.ok(!logs.text.includes(token.split('.')[2]), 'a token was found in the logs');
    }
    assert.equal((await client.keys(`${PREFIX}:token:*`)).length, 0, 'no live token keys remain');
    assert.ok(logs.text.includes('run completed'), 'the logs were captured at trace level');
  });
});

describe('params and overlap at enqueue', () => {
  test('bad data is rejected with the schema errors and nothing is enqueued', async () => {
    // Every state of BullMQ's queue, counted on the test's own connection.
    const before = await fx.queue('call').getJobCounts();
    await assert.rejects(fx.trigger('call', { mode: 'nope', extra: 1 }), (err: Error & { issues?: unknown[] }) => {
      assert.equal(err.name, 'ParamsError');
      assert.match(err.message, /must be equal to one of the allowed values/);
      assert.match(err.message, /must NOT have additional property "extra"/);
      return true;
    });
    await assert.rejects(fx.trigger('call', {}), /must have required property 'mode'/);
    await assert.rejects(fx.trigger('unknown', {}), /unknown job "unknown"; known jobs: call, flaky, nosvc/);
    assert.deepEqual(await fx.queue('call').getJobCounts(), before);
  });
});

describe('compatibility modes', () => {
  test('HS256 with JOBSCOPE_JWT_SECRET, and the token also in JOBSCOPE_TOKEN_HEADER', async () => {
    const secret = 'a-long-enough-shared-secret-for-hs256-mode!';
    const compat = await fx.another({
      env: {
        JOBSCOPE_PREFIX: PREFIX,
        JOBSCOPE_SERVICES: `svc=${service.url}`,
        JOBSCOPE_JWT_SECRET: secret,
        JOBSCOPE_TOKEN_HEADER: 'X-Access-Token',
      },
      workers: ['flaky'],
    });
    try {
      // This host's own flaky worker steps aside, so the compat host takes the run.
      await runtime.executor!.takers.get('flaky')!.pause();
      const runId = await fx.trigger('flaky');
      const report = await fx.wait(runId);
      assert.equal(report.state, 'completed');
      const reqs = requestsOf(runId);
      assert.equal(reqs.length, 3);
      for (const r of reqs) {
        assert.equal(r.accessToken, r.token, 'X-Access-Token carries the same token as Authorization');
        const payload = jwt.verify(r.token!, secret, { algorithms: ['HS256'] }) as jwt.JwtPayload;
        assert.equal(payload.run, runId);
        assert.equal(r.header!.alg, 'HS256');
        assert.equal(r.header!.typ, 'at+jwt');
        assert.doesNotMatch(String(r.header!.kid), new RegExp(secret.slice(0, 8)), 'the kid does not reveal the secret');
      }
    } finally {
      runtime.executor!.takers.get('flaky')!.resume();
      await compat.close();
    }
  });
});
