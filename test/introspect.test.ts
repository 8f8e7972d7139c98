// Token introspection (RFC 7662) end to end: the runner's real server answers POST /oauth/introspect for the clients of
// JOBSCOPE_INTROSPECT_CLIENTS, and a real Express service on 127.0.0.1 that cannot reach Redis checks liveness through it.
// Tokens come from real runs (a job calling the service; jobs that keep their token and run until cancelled) and, for the
// one token no run is given (two audiences), from the runner's minter; everything runs on a private Redis.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import { loadConfig } from '../src/config.ts';
import { ConfigError } from '../src/errors.ts';
import type { MintRequest } from '../src/token/mint.ts';
import { createJobTokenVerifier, type JobTokenClaims, type JobTokenVerifier } from '../src/token/verify.ts';
import { heldToken, heldTokenJob, jobscopeFixture, type Fixture } from './helpers/fixture.ts';
import type { TestServer } from './helpers/server.ts';
import { bearer, call, claims, ecPair, es256 } from './helpers/tokens.ts';

const PREFIX = 'is';
const SVC_SECRET = 'svc-introspection-secret-0123456789';
const OTHER_SECRET = 'other-introspection-secret-987654';

let fx: Fixture;
let runner: TestServer;
let verifier: JobTokenVerifier;
/** The service: it is started before the runner (the runner's config needs its URL) and given its app afterwards. */
let service: http.Server;
let serviceUrl: string;
let handler: express.Express | undefined;
/** What the service accepted, in this process's memory only (never printed). */
const accepted: { token: string; claims: JobTokenClaims }[] = [];

/** A token for two audiences: no run is given one (a run holds one token per service), so the runner's minter makes it. */
const twoAudiences: MintRequest = {
  job: 'hold',
  run: 'hold:1',
  attempt: 1,
  audience: ['svc', 'other'],
  scope: ['data:read'],
  lifetimeMs: 60_000,
};

/** A live token of a real run of `job` (`hold`: for svc; `elsewhere`: for other), which runs until cancelled. */
const liveToken = async (job = 'hold') => heldToken(await fx.trigger(job));

const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

function introspect(token: string | undefined, authorization?: string, json = false) {
  const headers: Record<string, string> = {};
  if (authorization) headers.authorization = authorization;
  let body: string | undefined;
  if (token !== undefined) {
    headers['content-type'] = json ? 'application/json' : 'application/x-www-form-urlencoded';
    body = json ? JSON.stringify({ token }) : new URLSearchParams({ token }).toString();
  }
  return runner.request('/oauth/introspect', { method: 'POST', headers, body });
}

before(async () => {
  service = http.createServer((req, res) => (handler ? handler(req, res) : res.writeHead(503).end()));
  await new Promise<void>((r) => service.listen(0, '127.0.0.1', r));
  serviceUrl = `http://127.0.0.1:${(service.address() as AddressInfo).port}`;
  const env = {
    JOBSCOPE_PREFIX: PREFIX,
    JOBSCOPE_SERVICES: `svc=${serviceUrl}`,
    JOBSCOPE_INTROSPECT_CLIENTS: `svc:${SVC_SECRET}, other:${OTHER_SECRET}`,
  };
  fx = await jobscopeFixture({
    jobs: {
      'calls.ts': `export default { token: { audience: ['svc'], scope: ['data:read'] },
      async run(ctx) { return await ctx.service('svc').get('data').json(); } };`,
      'hold.ts': heldTokenJob(`token: { audience: ['svc'], scope: ['data:read'] }, concurrency: 10`),
      'elsewhere.ts': heldTokenJob(`token: { audience: ['other'], scope: ['data:read'] }, concurrency: 10`),
    },
    env,
    workers: true,
  });
  // The runner's server as `jobscope start` builds it: its config carries the introspection clients.
  runner = await fx.startServer({ introspect: loadConfig({ REDIS_URL: fx.redisUrl, ...env }) });
  // The service: signature through the runner's JWKS, liveness through introspection. No Redis anywhere in its options.
  verifier = createJobTokenVerifier({
    audience: 'svc',
    jwksUrl: `${runner.url}/.well-known/jwks.json`,
    introspect: { url: `${runner.url}/oauth/introspect`, clientId: 'svc', clientSecret: SVC_SECRET },
  });
  const app = express();
  app.get('/data', verifier.middleware(), (req, res) => {
    accepted.push({ token: req.headers.authorization!.slice('Bearer '.length), claims: req.jobToken! });
    res.json({ jti: req.jobToken!.jti, run: req.jobToken!.run });
  });
  handler = app;
});

after(async () => {
  await verifier?.close();
  await fx?.close();
  service?.closeAllConnections();
  service?.close();
});

describe('POST /oauth/introspect', () => {
  test('a live token for the client: active, with its claims (and never the token)', async () => {
    const minted = await liveToken();
    for (const json of [false, true]) {
      const res = await introspect(minted.raw, basic('svc', SVC_SECRET), json);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers.get('cache-control'), 'no-store');
      const c = minted.claims;
      assert.deepEqual(c.act, { sub: 'client' });
      assert.deepEqual(res.body, {
        active: true,
        iss: c.iss,
        sub: c.sub,
        aud: c.aud,
        scope: c.scope,
        exp: c.exp,
        iat: c.iat,
        jti: c.jti,
        run: c.run,
        att: c.att,
        // Who started the run (createClient, here), as the token says it.
        act: { sub: 'client' },
        token_type: 'Bearer',
      });
      assert.ok(!res.text.includes(minted.raw));
    }
  });

  test('inactive, without a reason: revoked, for another client, forged, expired, garbage', async () => {
    const minted = await liveToken();
    // The token names svc only: the client "other" is told it is not active.
    assert.deepEqual((await introspect(minted.raw, basic('other', OTHER_SECRET))).body, { active: false });
    const both = await fx.runtime.minter.mint(twoAudiences);
    assert.equal((await introspect(both.raw, basic('other', OTHER_SECRET))).body.active, true);
    const now = Math.floor(Date.now() / 1000);
    // The runner's signing key's id, from a token it signed: a token under that kid but another key is forged.
    const { kid } = JSON.parse(Buffer.from(minted.raw.split('.')[0], 'base64url').toString()) as { kid: string };
    const inactive = [
      es256(ecPair(kid), claims()),
      es256(ecPair('stranger'), claims()),
      es256(ecPair(), claims({ exp: now - 60 })),
      'not-a-token',
      'x'.repeat(10_000),
    ];
    // Cancelling its run revokes the token at once.
    await fx.client.cancel(minted.runId, 'test');
    inactive.push(minted.raw);
    for (const token of inactive) {
      const res = await introspect(token, basic('svc', SVC_SECRET));
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.body, { active: false });
    }
  });

  test('client authentication: missing, unknown, wrong secret or not Basic is 401 with WWW-Authenticate: Basic', async () => {
    const minted = await liveToken();
    for (const authorization of [
      undefined,
      basic('svc', OTHER_SECRET),
      basic('svc', SVC_SECRET + 'x'),
      basic('nobody', SVC_SECRET),
      basic('', SVC_SECRET),
      `Bearer ${minted.raw}`,
      'Basic %%%',
      // The dashboard login is not an introspection client.
      basic('admin', 'admin-secret-pw'),
    ]) {
      const res = await introspect(minted.raw, authorization);
      assert.equal(res.status, 401, String(authorization));
      assert.equal(res.body.error, 'invalid_client');
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm=/);
      assert.ok(!res.text.includes(minted.raw));
    }
  });

  test('no token parameter: 400 invalid_request', async () => {
    assert.equal((await introspect(undefined, basic('svc', SVC_SECRET))).status, 400);
    const res = await runner.request('/oauth/introspect', {
      method: 'POST',
      headers: { authorization: basic('svc', SVC_SECRET), 'content-type': 'application/json' },
      body: JSON.stringify({ token: 42 }),
    });
    assert.equal(res.status, 400);
    assert.equal(res.body.error, 'invalid_request');
  });
});

describe('a service that checks liveness by introspection', () => {
  test("a real run's token is accepted while the run lives, and refused as revoked once it has ended", async () => {
    const runId = await fx.trigger('calls');
    const report = await fx.wait(runId);
    assert.equal(report.state, 'completed', JSON.stringify(report.error));
    const seen = accepted.find((a) => a.claims.run === runId);
    assert.ok(seen, 'the job reached the service with its token');
    assert.deepEqual(report.result, { jti: seen.claims.jti, run: runId });
    assert.deepEqual(seen.claims.aud, ['svc']);
    const after = await call(`${serviceUrl}/data`, bearer(seen.token));
    assert.equal(after.status, 401);
    assert.equal(after.body.error, 'revoked');
  });

  test('a minted token: accepted, then revoked; a token for another service: bad_audience before any introspection', async () => {
    const minted = await liveToken();
    assert.equal((await call(`${serviceUrl}/data`, bearer(minted.raw))).status, 200);
    await fx.client.cancel(minted.runId, 'test');
    assert.equal((await call(`${serviceUrl}/data`, bearer(minted.raw))).body.error, 'revoked');
    const elsewhere = await liveToken('elsewhere');
    assert.equal((await call(`${serviceUrl}/data`, bearer(elsewhere.raw))).body.error, 'bad_audience');
  });

  test('wrong client credentials, an endpoint that hangs or is down: 503 unavailable, never accepted', async () => {
    const minted = await liveToken();
    const jwksUrl = `${runner.url}/.well-known/jwks.json`;
    const wrong = createJobTokenVerifier({
      audience: 'svc',
      jwksUrl,
      introspect: { url: `${runner.url}/oauth/introspect`, clientId: 'svc', clientSecret: OTHER_SECRET },
    });
    await assert.rejects(wrong.verify(minted.raw), { code: 'unavailable' });

    const hanging = http.createServer(() => undefined);
    await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
    const slow = createJobTokenVerifier({
      audience: 'svc',
      jwksUrl,
      introspect: { url: `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/`, clientId: 'svc', clientSecret: SVC_SECRET },
      livenessTimeoutMs: 300,
    });
    try {
      const started = Date.now();
      await assert.rejects(slow.verify(minted.raw), { code: 'unavailable' });
      const took = Date.now() - started;
      assert.ok(took >= 250 && took < 2000, `gave up after ${took} ms`);
    } finally {
      hanging.closeAllConnections();
      await new Promise<void>((r) => hanging.close(() => r()));
    }

    const down = createJobTokenVerifier({
      audience: 'svc',
      jwksUrl,
      introspect: { url: 'http://127.0.0.1:1/oauth/introspect', clientId: 'svc', clientSecret: SVC_SECRET },
    });
    await assert.rejects(down.verify(minted.raw), { code: 'unavailable' });
  });

  test("the runner's Redis down: the endpoint answers 503, so the service says unavailable (503), not revoked", async () => {
    // A runner of its own on a Redis of its own (no workers), so stopping that Redis disturbs nothing else here: its token
    // comes from its minter (a run's token would need a worker there, and a run through the outage).
    const env = { JOBSCOPE_PREFIX: PREFIX, JOBSCOPE_INTROSPECT_CLIENTS: `svc:${SVC_SECRET}` };
    const own = await jobscopeFixture({ dir: fx.dir, env });
    const ownRedis = own.redisServer;
    const ownRunner = await own.startServer({ introspect: loadConfig({ REDIS_URL: own.redisUrl, ...env }) });
    const v = createJobTokenVerifier({
      audience: 'svc',
      jwksUrl: `${ownRunner.url}/.well-known/jwks.json`,
      introspect: { url: `${ownRunner.url}/oauth/introspect`, clientId: 'svc', clientSecret: SVC_SECRET },
      livenessTimeoutMs: 5000,
    });
    try {
      const minted = await own.runtime.minter.mint({ ...twoAudiences, audience: ['svc'] });
      assert.equal((await v.verify(minted.raw)).jti, minted.claims.jti);
      await ownRedis.stop();
      const direct = await ownRunner.request('/oauth/introspect', {
        method: 'POST',
        headers: { authorization: basic('svc', SVC_SECRET), 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: minted.raw }).toString(),
      });
      assert.equal(direct.status, 503);
      assert.equal(direct.body.active, undefined);
      await assert.rejects(v.verify(minted.raw), { code: 'unavailable' });
    } finally {
      await ownRedis.start();
      await v.close();
      await own.close();
    }
  });
});

describe('options', () => {
  test('liveness is exactly one of redis and introspect; client credentials are checked', () => {
    const base = { audience: 'svc', jwksUrl: 'http://127.0.0.1:1/jwks.json' };
    const introspection = { url: 'http://127.0.0.1:1/oauth/introspect', clientId: 'svc', clientSecret: SVC_SECRET };
    assert.throws(() => createJobTokenVerifier(base), /exactly one of `redis`.*`introspect`/);
    assert.throws(() => createJobTokenVerifier({ ...base, redis: fx.redisUrl, introspect: introspection }), /exactly one/);
    assert.throws(() => createJobTokenVerifier({ ...base, introspect: { ...introspection, clientSecret: 'short' } }), /clientSecret/);
    assert.throws(() => createJobTokenVerifier({ ...base, introspect: { ...introspection, url: 'ftp://x/' } }), /introspect.url/);
    assert.throws(() => createJobTokenVerifier({ ...base, introspect: { ...introspection, clientId: '' } }), /clientId/);
  });

  test('JOBSCOPE_INTROSPECT_CLIENTS: id:secret pairs, secrets of 16+ URL-safe characters, never echoed in errors', () => {
    const parse = (value: string) => loadConfig({ JOBSCOPE_INTROSPECT_CLIENTS: value }).introspectClients;
    assert.deepEqual(parse(''), {});
    assert.deepEqual(parse(` a:${SVC_SECRET} ,b.c:${OTHER_SECRET},`), { a: SVC_SECRET, 'b.c': OTHER_SECRET });
    for (const bad of [
      'nosecret',
      `:${SVC_SECRET}`,
      'a:short',
      `a:${SVC_SECRET}+/=`,
      `a b:${SVC_SECRET}`,
      `a:${SVC_SECRET},a:${OTHER_SECRET}`,
    ]) {
      assert.throws(
        () => parse(bad),
        (err: unknown) =>
          err instanceof ConfigError && /JOBSCOPE_INTROSPECT_CLIENTS/.test(err.message) && !err.message.includes(SVC_SECRET),
        bad,
      );
    }
  });
});
