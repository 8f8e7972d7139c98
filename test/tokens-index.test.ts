// GET /api/tokens (polled every second by the Run page while a run is live) reads the token index, never the keyspace:
// with 100,000 unrelated keys in Redis no SCAN or KEYS is issued and the answer stays fast; nor does any other route the
// pages poll. Liveness stays exact: the
// per-jti key decides (a revoked or expired token is never listed, and leaves the index).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { TokenClaims } from '../src/interfaces.ts';
import { liveTokenOf, TokenStore } from '../src/token/store.ts';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';
import { ADMIN, TestServer } from './helpers/server.ts';

const PREFIX = 'tix';
/** The token index (a sorted set of jtis) and a run's BullMQ hash, as RedisKeys names them. */
const TOKEN_INDEX = `${PREFIX}:_tokens`;
const runKey = (runId: string) => `${PREFIX}:${runId}`;
let fx: Fixture;
let srv: TestServer;

function claimsOf(run: string, lifetimeMs: number): { claims: TokenClaims; expiresAtMs: number } {
  const now = Date.now();
  const expiresAtMs = now + lifetimeMs;
  const claims: TokenClaims = {
    iss: 'jobscope',
    sub: 'job:slow',
    aud: ['system'],
    scope: '',
    jti: randomUUID(),
    iat: Math.floor(now / 1000),
    nbf: Math.floor(now / 1000),
    exp: Math.ceil(expiresAtMs / 1000),
    run,
    att: 1,
  };
  return { claims, expiresAtMs };
}

/** Per command name, how many calls Redis served since the last CONFIG RESETSTAT. */
async function commandCounts(client: Redis): Promise<Map<string, number>> {
  const info = await client.info('commandstats');
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1], Number(m[2]));
  return out;
}

before(async () => {
  fx = await jobscopeFixture({
    jobs: {
      'slow.ts': `export default {
      token: { audience: ['system'] },
      async run(ctx) { await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)); },
    };`,
    },
    env: { JOBSCOPE_PREFIX: PREFIX },
    workers: true,
    server: true,
  });
  srv = fx.server;
});

after(async () => {
  await fx?.close();
});

describe('the live tokens list', () => {
  test('lists exactly the live tokens: a revoked or expired one is not listed and leaves the index', async () => {
    // The token store of the runners (the same Redis and prefix), on the test's own connection.
    const store = new TokenStore(fx.redis, PREFIX);
    const live = claimsOf('slow:a', 60_000);
    const brief = claimsOf('slow:b', 300);
    const revoked = claimsOf('slow:c', 60_000);
    await Promise.all([live, brief, revoked].map((t) => store.register(t.claims, t.expiresAtMs)));
    const index = TOKEN_INDEX;
    assert.equal(await fx.redis.zcard(index), 3);
    await store.revoke(revoked.claims.jti);
    assert.equal(await fx.redis.zscore(index, revoked.claims.jti), null, 'a revocation leaves the index');
    await new Promise((r) => setTimeout(r, 400));
    const listed = await store.list();
    assert.deepEqual(
      listed.map((t) => t.jti),
      [live.claims.jti],
    );
    assert.deepEqual(listed[0], {
      jti: live.claims.jti,
      job: 'slow',
      run: 'slow:a',
      att: 1,
      aud: ['system'],
      scope: '',
      exp: new Date(live.claims.exp * 1000).toISOString(),
    });
    // The expired token's key is gone, so listing dropped it from the index.
    assert.deepEqual(await fx.redis.zrange(index, '0', '-1'), [live.claims.jti]);
    // A run's revocation (cancel) removes its tokens from the index too.
    await fx.redis.hset(runKey('slow:a'), 'jsClaims', JSON.stringify(live.claims));
    await store.revokeRun('slow:a');
    assert.deepEqual(await store.list(), []);
    assert.equal(await fx.redis.zcard(index), 0);
  });

  test('with 100,000 unrelated keys, GET /api/tokens issues no SCAN or KEYS and stays fast', async () => {
    const client = fx.redis;
    // 100,000 keys of someone else's, written by a script in batches (fast, and nothing like our keys).
    for (let i = 0; i < 100_000; i += 20_000) {
      await client.eval(`for i = ARGV[1], ARGV[2] do redis.call('SET', 'other:app:key:' .. i, 'x') end`, 0, i, i + 19_999);
    }
    assert.ok((await client.dbsize()) >= 100_000);
    const runId = await fx.trigger('slow');
    await until(async () => (await fx.api.tokens()).some((t) => t.run === runId), 10_000, 'the run token');

    await client.config('RESETSTAT');
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const started = performance.now();
      const res = await srv.request('/api/tokens', { auth: ADMIN });
      times.push(performance.now() - started);
      assert.equal(res.status, 200);
      assert.deepEqual(
        res.body.map((t: { run: string }) => t.run),
        [runId],
      );
    }
    const counts = await commandCounts(client);
    times.sort((a, b) => a - b);
    console.log(
      `GET /api/tokens at ${await client.dbsize()} keys: p50 ${times[10].toFixed(1)} ms, max ${times[19].toFixed(1)} ms, ` +
        `SCAN calls ${counts.get('scan') ?? 0}`,
    );
    assert.equal(counts.get('scan') ?? 0, 0, 'no SCAN');
    assert.equal(counts.get('keys') ?? 0, 0, 'no KEYS');

    // Nor does anything else the pages poll: the Jobs page with its overview, the Runs, Run, Workers and Tokens pages.
    await client.config('RESETSTAT');
    for (const path of ['/api/jobs', '/api/overview', '/api/runs', `/api/runs/${runId}`, '/api/workers', '/api/tokens', '/api/me']) {
      const res = await srv.request(path, { auth: ADMIN });
      assert.equal(res.status, 200, path);
    }
    const polled = await commandCounts(client);
    assert.equal(polled.get('scan') ?? 0, 0, 'no SCAN from any page');
    assert.equal(polled.get('keys') ?? 0, 0, 'no KEYS from any page');
    // The scan it replaces took 59 ms (p50, 200 SCAN calls per request) here at 100,000 keys; a generous bound for a busy machine.
    assert.ok(times[10] < 50, `p50 ${times[10]} ms`);
    await fx.client.cancel(runId);
  });
});

describe('a token key’s value', () => {
  test('is the token’s claims, listed as job, run, attempt, audience, scope and expiry; a listing an earlier jobscope wrote reads as is', () => {
    const claims: TokenClaims = {
      iss: 'jobscope',
      sub: 'job:nightly',
      aud: ['orders'],
      scope: 'orders:read',
      jti: 'j1',
      iat: 1_800_000_000,
      nbf: 1_800_000_000,
      exp: 1_800_000_900,
      run: 'nightly:7',
      att: 2,
    };
    const listed = {
      jti: 'j1',
      job: 'nightly',
      run: 'nightly:7',
      att: 2,
      aud: ['orders'],
      scope: 'orders:read',
      exp: '2027-01-15T08:15:00.000Z',
    };
    assert.deepEqual(liveTokenOf('j1', JSON.stringify(claims)), listed);
    const { jti: _, ...older } = listed;
    assert.deepEqual(liveTokenOf('j1', JSON.stringify(older)), listed);
    assert.equal(liveTokenOf('j2', JSON.stringify({ ...claims, sub: 'consumer:orders' })).job, 'consumer:orders');
  });
});
