// Tokens never appear in logs at any level, nor in what the runner stores or answers. Real Redis, real HTTP on 127.0.0.1:
// jobs that try hard to leak their token (log lines, progress, results, thrown errors, failed HTTP calls, a re-minted
// token), the runner's HTTP server hit with tokens in headers and query strings, and a service that logs every rejection
// of the verifier with an unmasked logger. Every captured byte is searched for every token and for each token's signature.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import type { Runtime } from '../src/runtime/runtime.ts';
import { adminCredentials } from '../src/server/app.ts';
import { closeVerifiers, extractToken, rejection, requireJobToken, verifyJobToken, type VerifyOptions } from '../src/token/verify.ts';
import { jobscopeFixture, type Fixture } from './helpers/fixture.ts';
import { freePort } from './helpers/redis.ts';
import { LogCapture } from './helpers/runtime.ts';
import { bearer, call, claims, craft, ecPair, es256, jwksOf, markLive } from './helpers/tokens.ts';

const PREFIX = 'nl';
const CALL = `await ctx.service('svc').get('data').json();`;
const JOBS = {
  'leaky.ts': `export default { token: { audience: ['svc'] }, async run(ctx) { ${CALL}
    const t = ctx.token.reveal();
    await ctx.log('my token is ' + t + ' and its signature ' + t.split('.')[2]);
    await ctx.progress({ t, sig: t.split('.')[2] });
    return { t, token: ctx.token, sig: t.split('.')[2] };
  } };`,
  'throws.ts': `export default { token: { audience: ['svc'] }, async run(ctx) { ${CALL}
    const t = ctx.token.reveal();
    const err = new Error('failed holding ' + t + ' / ' + t.split('.')[2]);
    err.token = t;
    throw err;
  } };`,
  'denied.ts': `export default { token: { audience: ['svc'] }, async run(ctx) { ${CALL} await ctx.service('svc').get('deny'); } };`,
  'unreachable.ts': `export default { token: { audience: ['svc'] }, async run(ctx) { ${CALL} await ctx.http.get('http://127.0.0.1:1/x?token=' + ctx.token.reveal()); } };`,
  'long.ts': `export default { token: { audience: ['svc'] }, async run(ctx) {
    const end = Date.now() + 3500;
    while (Date.now() < end) { ${CALL} await ctx.log('still ' + ctx.token.reveal()); await new Promise((r) => setTimeout(r, 200)); }
    return 'done';
  } };`,
};

let fx: Fixture;
let client: Redis;
let runtime: Runtime;
let runnerLogs: LogCapture;
let service: http.Server;
const tokens = new Set<string>();
/** Everything a leak could end up in, besides the runner's log. */
const captured: string[] = [];

function listen(server: http.Server, port = 0): Promise<string> {
  return new Promise((resolve) =>
    server.listen(port, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
  );
}

/** Whole tokens and their signatures (a signature alone is not masked by the JWT-shaped log filter). */
function secretsIn(text: string): string[] {
  const found: string[] = [];
  for (const t of tokens) {
    const sig = t.split('.')[2];
    if (text.includes(t)) found.push(`token …${t.slice(-8)}`);
    else if (sig && sig.length >= 16 && text.includes(sig)) found.push(`signature …${sig.slice(-8)}`);
  }
  return found;
}

before(async () => {
  // The service's address first (the runner is configured with it); it starts once the runner's server serves the JWKS.
  const servicePort = await freePort();
  fx = await jobscopeFixture({
    jobs: JOBS,
    env: {
      JOBSCOPE_PREFIX: PREFIX,
      JOBSCOPE_SERVICES: `svc=http://127.0.0.1:${servicePort}`,
      JOBSCOPE_TOKEN_MAX_LIFETIME: '3s',
      LOG_LEVEL: 'trace',
    },
    server: true,
  });
  ({ runtime, logs: runnerLogs } = fx);
  client = fx.redis;
  const app = express();
  const jwksUrl = `${fx.server.url}/.well-known/jwks.json`;
  service = http.createServer(app);
  app.get('/data', requireJobToken({ audience: 'svc', jwksUrl, redis: fx.redisUrl, prefix: PREFIX }), (req, res) => {
    tokens.add(extractToken(req));
    res.json({ ok: true });
  });
  app.get('/deny', (req, res) => {
    tokens.add(extractToken(req));
    res.status(401).json({ error: 'no' });
  });
  await listen(service, servicePort);
  await runtime.startWorkers();
});

after(async () => {
  await fx?.close();
  await closeVerifiers();
  service?.closeAllConnections();
  service?.close();
});

describe('the runner', () => {
  test('jobs that try to leak their token: logs at trace, job logs, progress, results, errors hold none', async () => {
    const runs = await Promise.all(Object.keys(JOBS).map((f) => fx.trigger(f.replace('.ts', ''))));
    const reports = await Promise.all(runs.map((runId) => fx.wait(runId, 20_000)));
    assert.deepEqual(
      reports.map((r) => r.state),
      ['completed', 'failed', 'failed', 'failed', 'completed'],
    );
    // The long run re-minted: more tokens than runs went out.
    assert.ok(tokens.size > runs.length, `tokens seen: ${tokens.size}`);
    assert.equal(runtime.logger.level, 'trace', 'every level is captured');
    assert.match(runnerLogs.text, /re-minted/);
    for (const r of reports) captured.push(JSON.stringify(r));
    assert.match(JSON.stringify(reports[0].logs), /\[redacted token\]/, 'the leak attempt happened and was redacted');
    assert.deepEqual(secretsIn(JSON.stringify(reports)), []);
    assert.deepEqual(secretsIn(runnerLogs.text), []);
  });

  test('nothing in Redis holds a token: no key, no value, no job data, log, result or claim list', async () => {
    const dump: string[] = [];
    for (const key of await client.keys('*')) {
      dump.push(key);
      const type = await client.type(key);
      if (type === 'string') dump.push(String(await client.get(key)));
      else if (type === 'hash') dump.push(JSON.stringify(await client.hgetall(key)));
      else if (type === 'list') dump.push(JSON.stringify(await client.lrange(key, '0', '-1')));
      else if (type === 'set') dump.push(JSON.stringify(await client.smembers(key)));
      else if (type === 'zset') dump.push(JSON.stringify(await client.zrange(key, '0', '-1')));
      else if (type === 'stream') dump.push(JSON.stringify(await client.xrange(key, '-', '+')));
    }
    assert.ok(dump.length > 20, 'Redis holds the runs');
    assert.deepEqual(secretsIn(dump.join('\n')), []);
  });

  test("the runner's HTTP server: tokens in headers and query strings never reach its log or its answers", async () => {
    const logs = new LogCapture();
    const server = await fx.startServer({ logger: pino({ level: 'trace' }, logs), admin: adminCredentials('admin', 'pw') });
    const base = server.url;
    try {
      const live = await runtime.minter.mint({
        job: 'leaky',
        run: 'leaky:x',
        attempt: 1,
        audience: ['svc'],
        scope: [],
        lifetimeMs: 60_000,
      });
      tokens.add(live.raw);
      const basic = `Basic ${Buffer.from('admin:pw').toString('base64')}`;
      const answers = [
        await call(`${base}/.well-known/jwks.json?access_token=${live.raw}`),
        await call(`${base}/api/tokens`, bearer(live.raw)),
        await call(`${base}/api/tokens?token=${live.raw}`, { 'x-access-token': live.raw }),
        await call(`${base}/api/tokens`, { authorization: basic }),
        await call(`${base}/api/runs/leaky:1?jwt=${live.raw}`, { authorization: basic, 'x-access-token': live.raw }),
      ];
      const listed = answers[3].body as unknown as { jti: string }[];
      assert.ok(
        listed.some((t) => t.jti === live.claims.jti),
        'GET /api/tokens lists the live token by jti',
      );
      captured.push(...answers.map((a) => JSON.stringify(a.body) + JSON.stringify([...a.headers])));
      assert.deepEqual(secretsIn(captured.join('\n')), []);
      assert.ok(logs.lines.length >= answers.length, 'every request was logged');
      assert.deepEqual(secretsIn(logs.text), []);
      await runtime.minter.revoke(live.claims.jti);
    } finally {
      await server.close();
    }
  });
});

describe('the verifier', () => {
  test('rejections (messages, stacks, bodies, headers) logged with an unmasked logger at trace hold no token', async () => {
    const logs = new LogCapture();
    const log = pino({ level: 'trace' }, logs);
    const key = ecPair('nl-key');
    const opts: VerifyOptions = { audience: 'svc', jwks: jwksOf(key), redis: client, prefix: PREFIX, scope: 'data:write' };
    const now = Math.floor(Date.now() / 1000);
    const variants: Record<string, unknown>[] = [
      claims(),
      claims({ exp: now - 60 }),
      claims({ nbf: now + 60 }),
      claims({ iss: 'x' }),
      claims({ aud: ['other'] }),
      claims({ jti: undefined }),
      claims({ jti: 'not a jti' }),
      claims({ scope: 'data:read' }),
    ];
    const forged: string[] = [];
    for (const payload of variants) {
      await markLive(client, PREFIX, payload.jti);
      forged.push(es256(key, payload), es256(ecPair('nl-key'), payload), es256(key, payload, { typ: 'JWT' }));
      forged.push(craft({ alg: 'HS256', typ: 'at+jwt', kid: 'nl-key' }, payload, { alg: 'HS256', secret: 'x'.repeat(40) }));
      forged.push(craft({ alg: 'none', typ: 'at+jwt' }, payload, { alg: 'none' }));
    }
    forged.push(es256(ecPair('unknown'), claims()));
    for (const t of forged) tokens.add(t);
    const codes = new Set<string>();
    for (const token of forged) {
      for (const req of [
        { headers: bearer(token) },
        { headers: { 'x-access-token': token, authorization: `Bearer ${token}x` } },
        { headers: {}, url: `/x?access_token=${token}` },
      ]) {
        try {
          await verifyJobToken(extractToken(req), opts);
          assert.fail('accepted');
        } catch (err) {
          const r = rejection(err);
          codes.add(r.body.error);
          log.trace({ err, rejection: r }, 'rejected');
          log.error({ message: (err as Error).message, stack: (err as Error).stack }, 'rejected');
        }
      }
    }
    assert.ok(codes.size >= 10, [...codes].join(' '));
    assert.ok(logs.lines.length >= forged.length * 6);
    assert.deepEqual(secretsIn(logs.text), []);
  });
});
