// The verifier against crafted tokens and requests, through a real Express service on 127.0.0.1 and a real Redis:
// every rejection code is produced, each with its status, JSON body and WWW-Authenticate header, and a valid token passes.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import {
  closeVerifiers,
  extractToken,
  JobTokenVerifier,
  REJECT_CODES,
  rejection,
  TokenRejectedError,
  verifyJobToken,
  type RejectCode,
  type VerifyOptions,
} from '../src/token/verify.ts';
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
    const v = new JobTokenVerifier({ audience: 'svc', publicKey: pem, redis: client, prefix: PREFIX });
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
    const payload = claims({}, 3600);
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

async function liveClaims(): Promise<Record<string, unknown>> {
  const payload = claims();
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
    assert.throws(() => new JobTokenVerifier({ ...opts, secret: 'short' }), TypeError);
  });

  test('options are checked: exactly one key source, audience, redis, an EC P-256 public key', () => {
    assert.throws(() => new JobTokenVerifier({ audience: 'svc', redis: client } as VerifyOptions), /exactly one/);
    assert.throws(
      () => new JobTokenVerifier({ audience: 'svc', redis: client, jwks: jwksOf(runner), secret: 'x'.repeat(40) }),
      /exactly one/,
    );
    assert.throws(() => new JobTokenVerifier({ audience: '', redis: client, jwks: jwksOf(runner) }), /audience/);
    assert.throws(() => new JobTokenVerifier({ audience: 'svc', jwks: jwksOf(runner) } as VerifyOptions), /redis/);
    assert.throws(() => new JobTokenVerifier({ audience: 'svc', redis: client, publicKey: runner.privateKey }), /public key/);
  });

  test('verifyJobToken reuses one verifier for equal options (no Redis connection per call)', async () => {
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
    const v = new JobTokenVerifier({ audience: 'svc', jwks: jwksOf(runner), redis: redis.url, prefix: PREFIX });
    try {
      assert.notEqual(v.redis.status, 'ready');
      const payload = await liveClaims();
      assert.equal((await v.verify(es256(runner, payload))).jti, payload.jti);
    } finally {
      await v.close();
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

describe('pure pieces', () => {
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
