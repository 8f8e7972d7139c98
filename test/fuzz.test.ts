// Property/fuzz test of the verifier: thousands of random and mutated tokens and headers, from a seeded PRNG (set
// FUZZ_SEED to replay), against verifyJobToken directly and against two real services on 127.0.0.1 (Express with
// requireJobToken, and the plain node:http example). Properties: nothing is accepted, every refusal is a known reason code
// with its status, nothing crashes or hangs, and the services still accept a valid token afterwards.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { closeVerifiers as closeDistVerifiers } from 'jobscope/verify';
import { createPlainService } from '../examples/plain-http-service.ts';
import { closeVerifiers, REJECT_CODES, TokenRejectedError, verifyJobToken, type VerifyOptions } from '../src/token/verify.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { b64, bearer, call, claims, craft, ecPair, es256, expressService, jwksOf, markLive, type EcPair } from './helpers/tokens.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed2026);
const DIRECT_CASES = 6000;
const HTTP_CASES = 1500;
const PREFIX = 'fz';

/** mulberry32: small, fast, good enough to spread test cases; the same seed gives the same cases. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  return { next, int, pick };
}
type Rng = ReturnType<typeof prng>;

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const PRINTABLE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('');
const NASTY = ['.', '..', '=', '+', '/', ' ', '\t', '%00', '\u00e9', '\u202e', '\ud83d\ude00', 'eyJ', '{', '}', '"', '\\'];

function randomString(rng: Rng, alphabet: string, max: number): string {
  let s = '';
  const n = rng.int(max);
  for (let i = 0; i < n; i++) s += rng.next() < 0.05 ? rng.pick(NASTY) : alphabet[rng.int(alphabet.length)];
  return s;
}

function randomValue(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 1 ? 6 : 8)) {
    case 0:
      return randomString(rng, PRINTABLE, 20);
    case 1:
      return rng.pick([0, -1, 1e308, -1e308, 2 ** 53, 1.5, Math.floor(Date.now() / 1000), Math.floor(Date.now() / 1000) + 3600]);
    case 2:
      return rng.pick([true, false, null]);
    case 3:
      return rng.pick(['svc', 'jobscope', 'job:x', 'at+jwt', 'ES256', 'HS256', 'none', '', ' svc']);
    case 4:
      return String(rng.pick([Date.now(), Math.floor(Date.now() / 1000) + 60, 'NaN', 'Infinity']));
    case 5:
      return undefined;
    case 6:
      return Array.from({ length: rng.int(4) }, () => randomValue(rng, depth + 1));
    default:
      return Object.fromEntries(Array.from({ length: rng.int(4) }, () => [randomString(rng, B64, 6), randomValue(rng, depth + 1)]));
  }
}

/** One random token, never equal to `valid`. Signed with the runner's key only with a jti that was never live. */
function fuzzToken(rng: Rng, valid: string, runner: EcPair, other: EcPair): string {
  const kind = rng.int(6);
  if (kind === 0) return randomString(rng, rng.pick([B64 + '.', PRINTABLE, 'eyJ.']), 400);
  if (kind === 1 || kind === 2) {
    // Mutations of the valid token.
    let t = valid;
    const edits = 1 + rng.int(kind === 1 ? 2 : 8);
    for (let i = 0; i < edits; i++) {
      const at = rng.int(t.length);
      switch (rng.int(8)) {
        case 7: {
          // The same bytes spelled differently: flip a spare bit of a segment's last character.
          const p = t.split('.');
          const k = rng.int(p.length);
          const last = p[k].slice(-1);
          if (B64.includes(last) && last) p[k] = p[k].slice(0, -1) + B64[B64.indexOf(last) ^ 1];
          t = p.join('.');
          break;
        }
        case 0:
          t = t.slice(0, at) + B64[rng.int(64)] + t.slice(at + 1);
          break;
        case 1:
          t = t.slice(0, at) + t.slice(at + 1);
          break;
        case 2:
          t = t.slice(0, at) + rng.pick([...B64, ...NASTY]) + t.slice(at);
          break;
        case 3:
          t = t.slice(0, at);
          break;
        case 4: {
          const p = t.split('.');
          t = [p[rng.int(p.length)], p[rng.int(p.length)], p[rng.int(p.length)]].join('.');
          break;
        }
        case 5:
          t = t + rng.pick(['.', '..', '.x', ' ', '=', '==']);
          break;
        default:
          t = t.replace(/[A-Za-z]/, (c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase()));
      }
    }
    return t === valid ? valid + 'x' : t;
  }
  // Structured forgeries: plausible headers and claims with random twists, signed in every wrong way.
  const now = Math.floor(Date.now() / 1000);
  const header: Record<string, unknown> = {
    alg: rng.next() < 0.6 ? 'ES256' : rng.pick(['HS256', 'none', 'RS256', 'ES384', '', null, 1, 'es256', 'ES256 ']),
    typ: rng.next() < 0.7 ? 'at+jwt' : randomValue(rng),
    kid: rng.next() < 0.7 ? runner.kid : randomValue(rng),
  };
  if (rng.next() < 0.1) header.crit = ['exp'];
  if (rng.next() < 0.1) header.jku = 'http://127.0.0.1:1/evil';
  const payload = claims(); // a fresh jti, never live
  for (let i = rng.int(4); i > 0; i--) payload[rng.pick(Object.keys(payload))] = randomValue(rng);
  if (rng.next() < 0.2) payload.exp = now + rng.pick([-3600, -10, 10, 3600, 1e10]);
  const signing = rng.int(5);
  if (signing === 0) return craft(header, payload, { alg: 'ES256', key: runner.privateKey });
  if (signing === 1) return craft(header, payload, { alg: 'ES256', key: other.privateKey });
  if (signing === 2) return craft(header, payload, { alg: 'HS256', secret: runner.publicKey.export({ format: 'pem', type: 'spki' }) });
  if (signing === 3) return craft(header, payload, { alg: 'none' });
  return `${b64(header)}.${b64(randomValue(rng) ?? 'x')}.${randomString(rng, B64, 100)}`;
}

/** Header sets (and a path) carrying random tokens in random ways. Header values stay legal for an HTTP client. */
function fuzzRequest(rng: Rng, valid: string, runner: EcPair, other: EcPair): { headers: Record<string, string>; path: string } {
  const token = () => {
    const t = fuzzToken(rng, valid, runner, other).replace(/[^\x20-\x7e]/g, '');
    // HTTP trims header values: a mutation that only added spaces around the valid token is the valid token.
    return t.trim() === valid ? `${valid}x` : t;
  };
  const headers: Record<string, string> = {};
  const scheme = rng.pick(['Bearer ', 'bearer ', 'BEARER  ', 'Bearer\t', 'Basic ', '', 'Bearer', 'Token ', ' Bearer ']);
  const mode = rng.int(5);
  if (mode === 0 || mode === 3) headers.authorization = scheme + token();
  if (mode === 1 || mode === 3) headers['x-access-token'] = token();
  if (mode === 2) headers.authorization = scheme + randomString(rng, PRINTABLE, 60);
  // mode 4: no token header at all; maybe a token in the query string.
  let path = '/data';
  if (mode === 4 || rng.next() < 0.1) {
    path += `?${rng.pick(['access_token', 'token', 'jwt', 'q', 'x'])}=${encodeURIComponent(rng.next() < 0.5 ? valid : token())}`;
  }
  return { headers, path };
}

let redis: TestRedis;
let client: Redis;
let runner: EcPair;
let other: EcPair;
let valid: string;
let opts: VerifyOptions;

before(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  runner = ecPair('fuzz-runner');
  other = ecPair('fuzz-runner');
  // As long as the runner's cap allows (a longer one would be refused as lifetime_too_long).
  const payload = claims({}, 900);
  await markLive(client, PREFIX, payload.jti, 900_000);
  valid = es256(runner, payload);
  opts = { audience: 'svc', jwks: jwksOf(runner), redis: redis.url, prefix: PREFIX };
});

after(async () => {
  await closeVerifiers();
  await closeDistVerifiers();
  client?.disconnect();
  await redis?.destroy();
});

describe(`fuzz (seed ${SEED})`, () => {
  test(`${DIRECT_CASES} random and mutated tokens through verifyJobToken: none accepted, every refusal a known code`, async () => {
    assert.equal((await verifyJobToken(valid, opts)).sub, 'job:test');
    const rng = prng(SEED);
    const codes = new Map<string, number>();
    const started = Date.now();
    for (let i = 0; i < DIRECT_CASES; i++) {
      const token = fuzzToken(rng, valid, runner, other);
      const outcome = await verifyJobToken(token, opts).then(
        () => 'ACCEPTED',
        (err: unknown) => (err instanceof TokenRejectedError ? err.code : `CRASH ${String(err)}`),
      );
      assert.ok(outcome !== 'ACCEPTED', `accepted a forged token (seed ${SEED}, case ${i})`);
      assert.ok((REJECT_CODES as readonly string[]).includes(outcome), `case ${i}: ${outcome}`);
      // Redis is up and the keys are local: nothing may be "unavailable".
      assert.notEqual(outcome, 'unavailable', `case ${i}`);
      codes.set(outcome, (codes.get(outcome) ?? 0) + 1);
    }
    assert.ok(Date.now() - started < 60_000, 'bounded time');
    // The generator reaches deep: past the signature (claims codes) and down to the liveness check.
    for (const code of ['malformed', 'bad_algorithm', 'bad_type', 'unknown_key', 'bad_signature', 'revoked']) {
      assert.ok((codes.get(code) ?? 0) > 0, `no case produced ${code}: ${JSON.stringify([...codes])}`);
    }
    assert.equal((await verifyJobToken(valid, opts)).sub, 'job:test');
  });

  test(`${HTTP_CASES} random requests against the Express and the plain node:http services: none accepted, none crashes them`, async () => {
    const express = await expressService(opts);
    const plain = createPlainService(opts);
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    const plainUrl = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
    try {
      const rng = prng(SEED ^ 0xabcdef);
      const started = Date.now();
      let sent = 0;
      const worker = async (n: number) => {
        for (let i = 0; i < n; i++) {
          const { headers, path } = fuzzRequest(rng, valid, runner, other);
          const base = rng.next() < 0.5 ? express.url : plainUrl;
          const url = base + (base === plainUrl ? path.replace('/data', '/sys/dict/all') : path);
          let res;
          try {
            res = await call(url, headers);
          } catch (err) {
            // The HTTP client refused to send it (an illegal header): nothing reached the service.
            assert.ok(err instanceof TypeError, String(err));
            continue;
          }
          sent++;
          assert.ok(res.status === 401 || res.status === 400, `${res.status} for ${JSON.stringify({ headers, path })}`);
          if (res.status === 401) assert.ok((REJECT_CODES as readonly string[]).includes(String(res.body.error)), JSON.stringify(res.body));
        }
      };
      await Promise.all(Array.from({ length: 10 }, () => worker(HTTP_CASES / 10)));
      assert.ok(sent > HTTP_CASES * 0.9, `sent ${sent}`);
      assert.ok(Date.now() - started < 60_000, 'bounded time');
      // Both services are alive and still accept the real token.
      assert.equal((await call(`${express.url}/data`, bearer(valid))).status, 200);
      assert.equal((await call(`${plainUrl}/sys/dict/all`, bearer(valid))).status, 200);
    } finally {
      await express.close();
      plain.closeAllConnections();
      await new Promise<void>((r) => plain.close(() => r()));
    }
  });

  test('huge, odd and repeated header values are refused without crashing', async () => {
    const express = await expressService(opts);
    try {
      const cases: Record<string, string>[] = [
        { authorization: 'Bearer ' + 'a'.repeat(12_000) },
        { authorization: 'Bearer ' + `${valid}.${valid}` },
        { authorization: `Bearer ${valid}`, 'x-access-token': `${valid} ` + 'x' },
        { 'x-access-token': ' '.repeat(100) },
        { authorization: 'Bearer' },
      ];
      for (const headers of cases) {
        const res = await call(`${express.url}/data`, headers);
        assert.equal(res.status, 401, JSON.stringify(res.body));
      }
      assert.equal((await call(`${express.url}/data`, bearer(valid))).status, 200);
    } finally {
      await express.close();
    }
  });
});
