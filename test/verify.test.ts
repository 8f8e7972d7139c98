// The verifier against crafted tokens and requests, through a real Express service on 127.0.0.1 and a real Redis:
// every rejection code is produced, each with its status, JSON body and WWW-Authenticate header, and a valid token passes.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import { Redis } from 'ioredis';
import {
  closeVerifiers,
  createJobTokenVerifier,
  extractToken,
  REJECT_CODES,
  rejection,
  requireJobToken,
  TokenRejectedError,
  verifyJobToken,
  type RejectCode,
  type VerifyOptions,
} from '../src/token/verify.ts';
import { checkClaims } from '../packages/verify/src/claims.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import {
  b64,
  bearer,
  call,
  claims,
  craft,
  ecPair,
  es256,
  expressService,
  jwksOf,
  markLive,
  payloadOf,
  type EcPair,
  type ServiceCall,
} from './helpers/tokens.ts';
import { until } from './helpers/wait.ts';

const PREFIX = 'vt';
let redis: TestRedis;
let client: Redis;
let runner: EcPair;
let service: Awaited<ReturnType<typeof expressService>>;
const seen = new Set<RejectCode>();

/** Calls the service and checks the rejection's shape: status, JSON reason, WWW-Authenticate, no-store. */
async function expectRejected(code: RejectCode, headers: Record<string, string>, path = '/data', method = 'GET'): Promise<ServiceCall> {
  const res = await call(service.url + path, headers, method);
  const status = code === 'insufficient_scope' ? 403 : code === 'unavailable' ? 503 : 401;
  assert.equal(res.body.error, code, `expected ${code}, got ${JSON.stringify(res.body)}`);
  assert.equal(res.status, status);
  assert.equal(typeof res.body.message, 'string');
  assert.equal(res.body.claims, undefined);
  const www = res.headers.get('www-authenticate') ?? '';
  assert.match(www, /^Bearer realm="jobscope"/);
  if (code !== 'missing') assert.match(www, new RegExp(`error_description="${code}"`));
  assert.equal(res.headers.get('cache-control'), 'no-store');
  seen.add(code);
  return res;
}

async function live(payload = claims()): Promise<string> {
  await markLive(client, PREFIX, payload.jti);
  return es256(runner, payload);
}

before(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  runner = ecPair('runner-key');
  service = await expressService({ audience: 'svc', jwks: jwksOf(runner), redis: redis.url, prefix: PREFIX });
});

after(async () => {
  await service?.close();
  await closeVerifiers();
  client?.disconnect();
  await redis?.destroy();
});

describe('a valid token', () => {
  test('is accepted and its claims reach the handler', async () => {
    const payload = claims();
    const res = await call(service.url + '/data', bearer(await live(payload)));
    assert.equal(res.status, 200);
    assert.equal(res.body.claims?.jti, payload.jti);
    assert.equal(res.body.claims?.run, 'test:1');
    assert.deepEqual(res.body.claims?.aud, ['svc']);
  });

  test('in X-Access-Token alone, or in both headers when they agree', async () => {
    const token = await live();
    assert.equal((await call(service.url + '/data', { 'x-access-token': token })).status, 200);
    assert.equal((await call(service.url + '/data', { ...bearer(token), 'x-access-token': token })).status, 200);
  });

  test('within the clock tolerance: exp 2 s ago, nbf 3 s ahead; a single-string aud', async () => {
    const now = Math.floor(Date.now() / 1000);
    assert.equal((await call(service.url + '/data', bearer(await live(claims({ exp: now - 2 }))))).status, 200);
    assert.equal((await call(service.url + '/data', bearer(await live(claims({ nbf: now + 3 }))))).status, 200);
    assert.equal((await call(service.url + '/data', bearer(await live(claims({ aud: 'svc' }))))).status, 200);
  });

  test('with the required scope on a scoped route', async () => {
    const res = await call(service.url + '/write', bearer(await live(claims({ scope: 'data:read data:write' }))), 'POST');
    assert.equal(res.status, 200);
  });
});

describe('the request', () => {
  test('without a token: 401 missing', async () => {
    const res = await expectRejected('missing', {});
    assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="jobscope"');
  });

  test('a header that is not "Bearer <token>": malformed', async () => {
    await expectRejected('malformed', { authorization: 'Basic dXNlcjpwYXNz' });
    await expectRejected('malformed', { authorization: `Bearer ${await live()} extra` });
  });

  test('both headers, different tokens: conflicting_tokens (even when each is valid)', async () => {
    const a = await live();
    const b = await live();
    await expectRejected('conflicting_tokens', { ...bearer(a), 'x-access-token': b });
  });

  test('Authorization twice (node keeps only the first): conflicting_tokens', async () => {
    const a = await live();
    const b = await live();
    const { port } = new URL(service.url);
    // A raw request: http.request would not send the header twice.
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1', () =>
        socket.write(
          `GET /data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${a}\r\nAuthorization: Bearer ${b}\r\nConnection: close\r\n\r\n`,
        ),
      );
      let data = '';
      socket.on('data', (d) => (data += d));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });
    const res = { status: Number(raw.split(' ')[1]), body: raw.slice(raw.indexOf('\r\n\r\n') + 4) };
    assert.equal(res.status, 401, res.body);
    assert.equal((JSON.parse(res.body) as { error: string }).error, 'conflicting_tokens');
  });

  test('a token only in the query string: token_in_query (and also next to a valid header)', async () => {
    const token = await live();
    for (const q of [
      `access_token=${token}`,
      `token=${token}`,
      `X-Access-Token=${token}`,
      `jwt=${token}`,
      `q=${token}`,
      `access%5Ftoken=x`,
    ]) {
      await expectRejected('token_in_query', {}, `/data?${q}`);
    }
    await expectRejected('token_in_query', bearer(token), `/data?access_token=${token}`);
    // An ordinary query string is fine.
    assert.equal((await call(service.url + '/data?page=2&sort=name', bearer(token))).status, 200);
  });
});

describe('forged or broken tokens', () => {
  test('not a JWS: malformed', async () => {
    for (const t of ['abc', 'a.b', 'a.b.c.d', '..', `${b64({ alg: 'ES256' })}.%%%.abc`, 'eyJ.eyJ.', `${'a'.repeat(9000)}.b.c`]) {
      await expectRejected('malformed', bearer(t));
    }
    // Header or payload that is not a JSON object.
    await expectRejected('malformed', bearer(`${b64('"x"')}.${b64(claims())}.${b64('sig')}`));
    await expectRejected(
      'malformed',
      bearer(craft({ alg: 'ES256', typ: 'at+jwt', kid: runner.kid }, '[1,2]', { alg: 'ES256', key: runner.privateKey })),
    );
  });

  test('signed with another key under the same kid: bad_signature', async () => {
    const other = ecPair(runner.kid);
    const payload = claims();
    await markLive(client, PREFIX, payload.jti);
    await expectRejected('bad_signature', bearer(es256(other, payload)));
  });

  test('tampered payload (aud, scope or exp changed after signing): bad_signature', async () => {
    const token = await live();
    const [h, , s] = token.split('.');
    for (const change of [
      { aud: ['svc', 'billing'] },
      { scope: 'data:read data:write admin' },
      { exp: (payloadOf(token).exp as number) + 3600 },
    ]) {
      await expectRejected('bad_signature', bearer(`${h}.${b64({ ...payloadOf(token), ...change })}.${s}`));
    }
  });

  test('a signature with a flipped bit, truncated, or a non-canonical base64url spelling', async () => {
    const token = await live();
    const [h, p, s] = token.split('.');
    const sig = Buffer.from(s, 'base64url');
    sig[10] ^= 1;
    await expectRejected('bad_signature', bearer(`${h}.${p}.${sig.toString('base64url')}`));
    await expectRejected('bad_signature', bearer(`${h}.${p}.${s.slice(0, 40)}`));
    // 64 bytes = 86 chars: the last one carries 2 spare bits; setting them spells the same bytes differently.
    const last = s[s.length - 1];
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const twin = alphabet[alphabet.indexOf(last) ^ 1];
    assert.deepEqual(Buffer.from(s.slice(0, -1) + twin, 'base64url'), Buffer.from(s, 'base64url'));
    await expectRejected('malformed', bearer(`${h}.${p}.${s.slice(0, -1)}${twin}`));
  });

  test('alg none (with or without a signature): bad_algorithm', async () => {
    const payload = claims();
    await markLive(client, PREFIX, payload.jti);
    await expectRejected('bad_algorithm', bearer(craft({ alg: 'none', typ: 'at+jwt', kid: runner.kid }, payload, { alg: 'none' })));
    await expectRejected('bad_algorithm', bearer(craft({ alg: 'None', typ: 'at+jwt' }, payload, { alg: 'none' })));
    const signed = es256(runner, payload).split('.')[2];
    await expectRejected('bad_algorithm', bearer(`${b64({ alg: 'none', typ: 'at+jwt', kid: runner.kid })}.${b64(payload)}.${signed}`));
  });

  test('HS256 signed with the ES public key (PEM, DER, JWK): bad_algorithm, never an HMAC check', async () => {
    const payload = claims();
    await markLive(client, PREFIX, payload.jti);
    const pem = runner.publicKey.export({ format: 'pem', type: 'spki' });
    const der = runner.publicKey.export({ format: 'der', type: 'spki' });
    const jwk = JSON.stringify(runner.publicKey.export({ format: 'jwk' }));
    for (const secret of [pem, der, jwk]) {
      await expectRejected(
        'bad_algorithm',
        bearer(craft({ alg: 'HS256', typ: 'at+jwt', kid: runner.kid }, payload, { alg: 'HS256', secret })),
      );
    }
    // Also a verifier given the public key directly (no kid lookup at all).
    const v = createJobTokenVerifier({ audience: 'svc', publicKey: pem, redis: client, prefix: PREFIX });
    await assert.rejects(v.verify(craft({ alg: 'HS256', typ: 'at+jwt' }, payload, { alg: 'HS256', secret: pem })), {
      code: 'bad_algorithm',
    });
    assert.equal((await v.verify(es256(runner, payload))).jti, payload.jti);
  });

  test('other algorithms (RS256, ES384, PS256, EdDSA, missing alg): bad_algorithm', async () => {
    const payload = claims();
    await markLive(client, PREFIX, payload.jti);
    const sig = es256(runner, payload).split('.')[2];
    for (const alg of ['RS256', 'ES384', 'PS256', 'EdDSA', 'es256', undefined]) {
      await expectRejected('bad_algorithm', bearer(`${b64({ alg, typ: 'at+jwt', kid: runner.kid })}.${b64(payload)}.${sig}`));
    }
  });

  test('wrong or missing typ (RFC 9068 at+jwt): bad_type', async () => {
    for (const typ of ['JWT', 'jwt', 'id_token+jwt', undefined, 42]) {
      const payload = claims();
      await markLive(client, PREFIX, payload.jti);
      await expectRejected('bad_type', bearer(es256(runner, payload, { typ })));
    }
    // The media-type spelling is the same type.
    assert.equal((await call(service.url + '/data', bearer(es256(runner, await liveClaims(), { typ: 'application/at+JWT' })))).status, 200);
  });

  test('a critical header extension: malformed', async () => {
    await expectRejected('malformed', bearer(es256(runner, await liveClaims(), { crit: ['b64'], b64: false })));
  });

  test('an unknown kid, or none: unknown_key; a jku/jwk header is never followed', async () => {
    const stranger = ecPair('stranger');
    await expectRejected('unknown_key', bearer(es256(stranger, await liveClaims())));
    await expectRejected('unknown_key', bearer(es256(runner, await liveClaims(), { kid: undefined })));
    const embedded = { ...stranger.publicKey.export({ format: 'jwk' }), kid: 'stranger' };
    await expectRejected('unknown_key', bearer(es256(stranger, await liveClaims(), { jwk: embedded, jku: 'http://127.0.0.1:1/jwks' })));
  });

  test('expired beyond the tolerance: expired', async () => {
    const now = Math.floor(Date.now() / 1000);
    await expectRejected('expired', bearer(await live(claims({ iat: now - 120, nbf: now - 120, exp: now - 60 }))));
    await expectRejected('expired', bearer(await live(claims({ exp: now - 6 }))));
  });

  test('nbf or iat in the future: not_yet_valid', async () => {
    const now = Math.floor(Date.now() / 1000);
    await expectRejected('not_yet_valid', bearer(await live(claims({ nbf: now + 60 }))));
    await expectRejected('not_yet_valid', bearer(await live(claims({ iat: now + 60, nbf: undefined }))));
  });

  test('a lifetime (exp - iat) beyond the runner cap plus grace and tolerance (935 s by default): lifetime_too_long', async () => {
    const now = Math.floor(Date.now() / 1000);
    assert.equal((await call(service.url + '/data', bearer(await live(claims({}, 935))))).status, 200);
    await expectRejected('lifetime_too_long', bearer(await live(claims({}, 936))));
    // The token the issue found accepted: correctly signed, live, exp ten years out.
    await expectRejected('lifetime_too_long', bearer(await live(claims({ exp: now + 10 * 365 * 86400 }, 0))));
    // A service whose runner hands out longer tokens says so.
    const payload = await liveClaims(claims({}, 3600));
    for (const maxLifetime of [3600, '1h', '60m']) {
      const v = createJobTokenVerifier({ audience: 'svc', jwks: jwksOf(runner), redis: client, prefix: PREFIX, maxLifetime });
      assert.equal((await v.verify(es256(runner, payload))).jti, payload.jti);
    }
    const strict = createJobTokenVerifier({ audience: 'svc', jwks: jwksOf(runner), redis: client, prefix: PREFIX, maxLifetime: '59m' });
    await assert.rejects(strict.verify(es256(runner, payload)), { code: 'lifetime_too_long' });
    for (const maxLifetime of ['15 minutes', -1, 0, 'x']) {
      assert.throws(() => createJobTokenVerifier({ audience: 'svc', jwks: jwksOf(runner), redis: client, maxLifetime }), /maxLifetime/);
    }
  });

  test('wrong issuer: bad_issuer', async () => {
    await expectRejected('bad_issuer', bearer(await live(claims({ iss: 'someone-else' }))));
    await expectRejected('bad_issuer', bearer(await live(claims({ iss: 'Jobscope' }))));
  });

  test('minted for another service: bad_audience', async () => {
    await expectRejected('bad_audience', bearer(await live(claims({ aud: ['billing'] }))));
    await expectRejected('bad_audience', bearer(await live(claims({ aud: 'svc-admin' }))));
  });

  test('required claims missing (jti, sub, iat, exp, iss, aud, run): missing_claim', async () => {
    for (const name of ['jti', 'sub', 'iat', 'exp', 'iss', 'aud', 'run']) {
      const payload = claims({ [name]: undefined });
      if (payload.jti) await markLive(client, PREFIX, payload.jti);
      const res = await expectRejected('missing_claim', bearer(es256(runner, payload)));
      assert.match(res.body.message ?? '', new RegExp(`"${name}"`));
    }
    await expectRejected('missing_claim', bearer(await live(claims({ aud: [] }))));
  });

  test('claims of the wrong type: malformed', async () => {
    for (const change of [
      { exp: String(Math.floor(Date.now() / 1000) + 60) },
      { iat: 'yesterday' },
      { aud: [1] },
      { jti: '*' },
      { jti: 'a:b' },
      { scope: ['a'] },
    ]) {
      await expectRejected('malformed', bearer(await live(claims(change))));
    }
  });

  test('valid signature and claims but not live in Redis: revoked (and still so when its exp is far away)', async () => {
    // 15 min: as far away as the runner's cap allows (a longer lifetime is refused as lifetime_too_long, below).
    const payload = claims({}, 900);
    const token = await live(payload);
    assert.equal((await call(service.url + '/data', bearer(token))).status, 200);
    await client.del(`${PREFIX}:token:${String(payload.jti)}`);
    await expectRejected('revoked', bearer(token));
    // Never registered at all.
    await expectRejected('revoked', bearer(es256(runner, claims())));
    // Registered under another prefix.
    const other = claims();
    await markLive(client, 'other-prefix', other.jti);
    await expectRejected('revoked', bearer(es256(runner, other)));
  });

  test('a live token without the route scope: 403 insufficient_scope naming the scope', async () => {
    const res = await expectRejected('insufficient_scope', bearer(await live()), '/write', 'POST');
    assert.match(res.headers.get('www-authenticate') ?? '', /error="insufficient_scope".*scope="data:write"/);
    // A scope that only prefixes the required one does not count.
    await expectRejected('insufficient_scope', bearer(await live(claims({ scope: 'data:writer data:write:x' }))), '/write', 'POST');
  });

  test('a revoked token with too little scope is still "revoked" (401), not 403', async () => {
    await expectRejected('revoked', bearer(es256(runner, claims())), '/write', 'POST');
  });
});

async function liveClaims(payload = claims()): Promise<Record<string, unknown>> {
  await markLive(client, PREFIX, payload.jti);
  return payload;
}

describe('key sources', () => {
  test('HS256 with a secret: accepted; ES256 tokens and a wrong secret are refused', async () => {
    const secret = 'a-compatibility-secret-of-32-bytes-or-more!';
    const opts: VerifyOptions = { audience: 'svc', secret, redis: client, prefix: PREFIX };
    const payload = await liveClaims();
    const hs = craft({ alg: 'HS256', typ: 'at+jwt' }, payload, { alg: 'HS256', secret });
    assert.equal((await verifyJobToken(hs, opts)).jti, payload.jti);
    await assert.rejects(verifyJobToken(craft({ alg: 'HS256', typ: 'at+jwt' }, payload, { alg: 'HS256', secret: secret + 'x' }), opts), {
      code: 'bad_signature',
    });
    await assert.rejects(verifyJobToken(es256(runner, payload), opts), { code: 'bad_algorithm' });
    assert.throws(() => createJobTokenVerifier({ ...opts, secret: 'short' }), TypeError);
  });

  test('options are checked: exactly one key source, audience, redis, an EC P-256 public key', () => {
    assert.throws(() => createJobTokenVerifier({ audience: 'svc', redis: client } as VerifyOptions), /exactly one/);
    assert.throws(
      () => createJobTokenVerifier({ audience: 'svc', redis: client, jwks: jwksOf(runner), secret: 'x'.repeat(40) }),
      /exactly one/,
    );
    assert.throws(() => createJobTokenVerifier({ audience: '', redis: client, jwks: jwksOf(runner) }), /audience/);
    assert.throws(() => createJobTokenVerifier({ audience: 'svc', jwks: jwksOf(runner) } as VerifyOptions), /redis/);
    assert.throws(() => createJobTokenVerifier({ audience: 'svc', redis: client, publicKey: runner.privateKey }), /public key/);
  });

  test('verifyJobToken closes the verifier it builds: no Redis connection is left behind per call', async () => {
    const connections = async () => ((await client.client('LIST')) as string).trim().split('\n').length;
    const doc = jwksOf(runner);
    const token = es256(runner, await liveClaims());
    const before = await connections();
    for (let i = 0; i < 20; i++) {
      // A fresh options literal each call, as a handler would write it.
      await verifyJobToken(token, { audience: 'svc', jwks: doc, redis: redis.url, prefix: PREFIX });
    }
    assert.ok((await connections()) - before <= 1);
  });

  test('a request that arrives while the verifier is still connecting to Redis waits for it (no spurious 503)', async () => {
    const connections = async () => ((await client.client('LIST')) as string).trim().split('\n').length;
    const before = await connections();
    const v = createJobTokenVerifier({ audience: 'svc', jwks: jwksOf(runner), redis: redis.url, prefix: PREFIX });
    try {
      assert.equal(await connections(), before, 'not connected yet: the first token comes before the connection is ready');
      const payload = await liveClaims();
      assert.equal((await v.verify(es256(runner, payload))).jti, payload.jti);
    } finally {
      await v.close();
    }
  });

  test('a JWKS source that never answers (URL or function): 503 unavailable after jwksTimeoutMs', async () => {
    const silent = http.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const token = es256(runner, await liveClaims());
      for (const source of [
        { jwksUrl: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/jwks.json` },
        { jwks: () => new Promise<never>(() => undefined) },
      ]) {
        const v = createJobTokenVerifier({ audience: 'svc', ...source, redis: client, prefix: PREFIX, jwksTimeoutMs: 300 });
        const started = Date.now();
        await assert.rejects(v.verify(token), { code: 'unavailable' });
        const took = Date.now() - started;
        assert.ok(took >= 250 && took < 2000, `gave up after ${took} ms`);
      }
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  test('a JWKS URL that cannot be fetched: 503 unavailable, never accepted', async () => {
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const opts: VerifyOptions = { audience: 'svc', jwksUrl: `http://127.0.0.1:${port}/jwks.json`, redis: client, prefix: PREFIX };
    const err = await verifyJobToken(es256(runner, await liveClaims()), opts).catch((e: unknown) => e);
    assert.ok(err instanceof TokenRejectedError);
    assert.equal(err.code, 'unavailable');
    assert.equal(rejection(err).status, 503);
    seen.add('unavailable');
  });
});

describe('createJobTokenVerifier: built once, closed once', () => {
  test('one verifier serves many routes (scopes per middleware) over one Redis connection; close() releases it', async () => {
    const connections = async () => ((await client.client('LIST')) as string).trim().split('\n').length;
    const before = await connections();
    const verifier = createJobTokenVerifier({ audience: 'svc', jwks: jwksOf(runner), redis: redis.url, prefix: PREFIX });
    assert.equal(await connections(), before, 'no connection before the first token');
    const app = express();
    app.get('/data', verifier.middleware(), (req, res) => void res.json({ claims: req.jobToken }));
    app.post('/write', verifier.middleware({ scope: 'data:write' }), (req, res) => void res.json({ claims: req.jobToken }));
    const server = await new Promise<http.Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const reader = es256(runner, await liveClaims());
      const writer = es256(runner, await liveClaims(claims({ scope: 'data:read data:write' })));
      for (let i = 0; i < 10; i++) {
        assert.equal((await call(url + '/data', bearer(reader))).status, 200);
        assert.equal((await call(url + '/write', bearer(writer), 'POST')).status, 200);
      }
      const refused = await call(url + '/write', bearer(reader), 'POST');
      assert.equal(refused.status, 403);
      assert.equal(refused.body.error, 'insufficient_scope');
      // Per call, too: verify(token, { scope }).
      await assert.rejects(verifier.verify(reader, { scope: 'data:write' }), { code: 'insufficient_scope' });
      assert.equal((await connections()) - before, 1);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
    await verifier.close();
    await until(async () => (await connections()) === before, 5000, 'the connection to close');
    // A closed verifier refuses (503), it never accepts.
    await assert.rejects(verifier.verify(es256(runner, await liveClaims())), { code: 'unavailable' });
  });

  test('requireJobToken builds one verifier per call, and closeVerifiers() closes exactly those', async () => {
    const connections = async () => ((await client.client('LIST')) as string).trim().split('\n').length;
    // The service's own middlewares were built by requireJobToken too: closed here, rebuilt below.
    await closeVerifiers();
    await until(async () => (await connections()) === 1, 5000, 'only the test client to be connected');
    const before = 1;
    const opts: VerifyOptions = { audience: 'svc', jwks: jwksOf(runner), redis: redis.url, prefix: PREFIX };
    const a = requireJobToken(opts);
    const b = requireJobToken(opts);
    assert.notEqual(a.verifier, b.verifier);
    const token = es256(runner, await liveClaims());
    assert.equal((await a.verifier.verify(token)).jti, payloadOf(token).jti);
    assert.equal((await b.verifier.verify(token)).jti, payloadOf(token).jti);
    assert.equal((await connections()) - before, 2);
    await closeVerifiers();
    await until(async () => (await connections()) === before, 5000, 'both connections to close');
    // Closed, a verifier refuses with 503 until rebuilt.
    await assert.rejects(service.middleware.verifier.verify(token), { code: 'unavailable' });
    await service.close();
    service = await expressService({ audience: 'svc', jwks: jwksOf(runner), redis: redis.url, prefix: PREFIX });
    assert.equal((await call(service.url + '/data', bearer(token))).status, 200);
  });

  test('concurrent first requests share one JWKS fetch', async () => {
    let served = 0;
    const jwksServer = http.createServer((_req, res) => {
      served++;
      setTimeout(() => res.setHeader('content-type', 'application/json').end(JSON.stringify(jwksOf(runner))), 50);
    });
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
    const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
    const verifier = createJobTokenVerifier({ audience: 'svc', jwksUrl, redis: client, prefix: PREFIX });
    try {
      const tokens = await Promise.all(Array.from({ length: 50 }, async () => es256(runner, await liveClaims())));
      const results = await Promise.all(tokens.map((t) => verifier.verify(t)));
      assert.equal(results.length, 50);
      assert.equal(served, 1);
    } finally {
      await verifier.close();
      jwksServer.closeAllConnections();
      await new Promise<void>((r) => jwksServer.close(() => r()));
    }
  });

  test('a service started before the runner: 503 while the JWKS is down (retried 1 s later, not per request), then accepted', async () => {
    // The runner's address: until it is up, every request is dropped unanswered (counted: the fetches the service made).
    let up = false;
    let fetched = 0;
    const jwksServer = http.createServer((req, res) => {
      fetched++;
      if (!up) return void req.socket.destroy();
      res.setHeader('content-type', 'application/json').end(JSON.stringify(jwksOf(runner)));
    });
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
    const verifier = createJobTokenVerifier({
      audience: 'svc',
      jwksUrl: `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`,
      redis: client,
      prefix: PREFIX,
    });
    const token = es256(runner, await liveClaims(claims({}, 300)));
    try {
      // The runner is not up yet: every answer is 503 unavailable (never a cached verdict on the key), and asked every
      // 25 ms for 1.5 s the service fetched twice (at 0 and after 1 s), not sixty times.
      const started = Date.now();
      let asked = 0;
      while (Date.now() - started < 1500) {
        await assert.rejects(verifier.verify(token), { code: 'unavailable' });
        asked++;
        await new Promise((r) => setTimeout(r, 25));
      }
      assert.ok(asked > 20, `asked ${asked}`);
      assert.equal(fetched, 2);
      // The runner comes up: the next retry (2 s after the second failure) fetches and the token verifies.
      up = true;
      const upAt = Date.now();
      let claimsOf: unknown;
      await until(
        async () => (claimsOf = await verifier.verify(token).catch(() => undefined)) !== undefined,
        5000,
        'the token to verify once the JWKS is up',
      );
      const waited = Date.now() - upAt;
      assert.ok(waited < 2500, `accepted ${waited} ms after the runner came up`);
      assert.equal((claimsOf as { jti: string }).jti, payloadOf(token).jti);
      assert.equal(fetched, 3);
    } finally {
      await verifier.close();
      jwksServer.closeAllConnections();
      await new Promise<void>((r) => jwksServer.close(() => r()));
    }
  });
});

describe('pure pieces', () => {
  test('checkClaims: every claim verdict from the claims alone (no library message read), in order, code and message', () => {
    const rules = { audience: 'svc', issuer: 'jobscope', toleranceSec: 5, maxLifetimeSec: 935 };
    const now = 1_800_000_000;
    const ok = { iss: 'jobscope', sub: 'job:x', aud: ['svc'], jti: 'a-1', iat: now, nbf: now, exp: now + 60, run: 'x:1', att: 1 };
    const refused = (payload: Record<string, unknown>, code: RejectCode, message: string) =>
      assert.throws(() => checkClaims(payload, rules, now), { name: 'TokenRejectedError', code, message });
    assert.equal(checkClaims(ok, rules, now).jti, 'a-1');
    refused({ ...ok, exp: String(now + 60) }, 'malformed', 'exp, iat and nbf must be numbers');
    refused({ ...ok, run: undefined }, 'missing_claim', 'claim "run" is missing');
    // nbf before exp (jsonwebtoken's order, kept), both before aud.
    refused({ ...ok, nbf: now + 6, exp: now - 10, aud: ['other'] }, 'not_yet_valid', 'token not valid yet (nbf)');
    refused({ ...ok, exp: now - 5, aud: ['other'] }, 'expired', 'token expired');
    refused({ ...ok, iat: now + 6, nbf: undefined }, 'not_yet_valid', 'token issued in the future (iat)');
    refused({ ...ok, exp: now + 936 }, 'lifetime_too_long', 'token lifetime exceeds 935 s');
    // aud before iss.
    refused({ ...ok, aud: 'other', iss: 'else' }, 'bad_audience', 'token is not for audience "svc"');
    refused({ ...ok, iss: 'else' }, 'bad_issuer', 'issuer is not accepted');
    // The tolerance's edges: exp passes until now >= exp + tolerance, nbf while nbf <= now + tolerance.
    assert.equal(checkClaims({ ...ok, exp: now - 4 }, rules, now).exp, now - 4);
    assert.equal(checkClaims({ ...ok, nbf: now + 5 }, rules, now).nbf, now + 5);
  });

  test('extractToken: Bearer first, case-insensitive scheme, empty X-Access-Token ignored', () => {
    assert.equal(extractToken({ headers: { authorization: 'bearer abc' } }), 'abc');
    assert.equal(extractToken({ headers: { authorization: 'Bearer abc', 'x-access-token': '' } }), 'abc');
    assert.throws(() => extractToken({ headers: { 'x-access-token': ['a', 'b'] } }), { code: 'conflicting_tokens' });
    assert.throws(() => extractToken({ headers: {}, url: '/x?foo=1&ACCESS_TOKEN=1' }), { code: 'token_in_query' });
  });

  test('rejection: anything that is not a TokenRejectedError fails closed (503), without echoing its message', () => {
    const r = rejection(new Error('boom with secret details'));
    assert.equal(r.status, 503);
    assert.equal(r.body.error, 'unavailable');
    assert.doesNotMatch(r.body.message, /secret/);
  });
});

describe('Redis down', () => {
  test('fails closed with 503 unavailable, fast, then recovers when Redis is back', async () => {
    const payload = await liveClaims();
    const token = es256(runner, payload);
    assert.equal((await call(service.url + '/data', bearer(token))).status, 200);
    await redis.stop();
    const started = Date.now();
    await expectRejected('unavailable', bearer(token));
    assert.ok(Date.now() - started < 3000, 'answered within the liveness timeout');
    const res = await call(service.url + '/data', bearer(token));
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('retry-after'), '1');
    await redis.start();
    // The restarted Redis is empty: the token is not live any more (revoked), and a re-registered one works again.
    await until(
      async () => (await call(service.url + '/data', bearer(token))).body.error === 'revoked',
      10_000,
      'the verifier to reconnect',
    );
    await until(async () => client.status === 'ready', 10_000, 'the test client to reconnect');
    await markLive(client, PREFIX, payload.jti);
    assert.equal((await call(service.url + '/data', bearer(token))).status, 200);
  });
});

describe('coverage of the reason codes', () => {
  test('every code in REJECT_CODES was produced above', () => {
    assert.deepEqual([...seen].sort(), [...REJECT_CODES].sort());
  });
});
