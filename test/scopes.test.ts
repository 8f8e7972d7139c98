// createScopes against a real Redis and real verifying services on 127.0.0.1: a scope's tokens are live before fn starts,
// each concurrent scope's calls carry its own token (subject, id claim), the service side is the unchanged verifier, and
// every token is revoked when fn ends, whatever the outcome.
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { createScopes, ScopeError, type Scopes } from '../src/index.ts';
import { generateEcPem } from '../src/token/signing-keys.ts';
import { checkSubject } from '../src/scopes.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { VerifyingService } from './helpers/service.ts';
import { until } from './helpers/wait.ts';

const prefix = 'scp';
let redis: TestRedis;
let client: Redis;
let dir: string;
let scopes: Scopes;
let orders: VerifyingService;
let billing: VerifyingService;

async function liveTokens(): Promise<string[]> {
  return client.keys(`${prefix}:token:*`);
}

before(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  dir = mkdtempSync(path.join(os.tmpdir(), 'jobscope-scopes-'));
  const pem = generateEcPem();
  const keyFile = path.join(dir, 'signing.pem');
  writeFileSync(keyFile, pem);
  const publicKey = createPublicKey(pem);
  orders = await new VerifyingService({ audience: 'orders', publicKey, redis: redis.url, prefix }).start();
  billing = await new VerifyingService({ audience: 'billing', publicKey, redis: redis.url, prefix }).start();
  scopes = createScopes({
    redisUrl: redis.url,
    prefix,
    signingKeyFile: keyFile,
    services: { orders: orders.url, billing: billing.url },
    issuer: 'jobscope',
  });
});

after(async () => {
  await scopes.close();
  await Promise.all([orders.stop(), billing.stop()]);
  client.disconnect();
  await redis.destroy();
  rmSync(dir, { recursive: true, force: true });
});

describe('createScopes', () => {
  test('the subject is a workload: users, jobs and shapeless names are refused', () => {
    assert.equal(checkSubject('consumer:orders'), 'consumer:orders');
    for (const bad of ['user:alice', 'job:sync', 'orders', '', 'consumer:', 'Consumer:x y']) {
      assert.throws(() => checkSubject(bad), ScopeError, bad);
    }
  });

  test('50 concurrent scopes: each call carries its own live token (subject, id), all revoked at the end', async () => {
    orders.calls = [];
    orders.delayMs = 40; // keeps the scopes' calls in flight together
    const seen = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        scopes.run({ subject: 'consumer:orders', audience: ['orders', 'billing'], scope: ['orders:read'], id: `msg-${i}` }, async (ctx) => {
          assert.equal((await client.exists(`${prefix}:token:${ctx.token.claims.jti}`)) === 1, true, 'live before fn');
          await new Promise((r) => setTimeout(r, (i * 7) % 20)); // interleave the scopes
          const first = await ctx
            .service('orders')
            .get(`m/${i}/a`, { headers: { 'x-msg': `msg-${i}` } })
            .json<{ id: string }>();
          const second = await ctx.http.get(`${orders.url}/m/${i}/b`, { headers: { 'x-msg': `msg-${i}` } }).json<{ id: string }>();
          return { jti: ctx.token.claims.jti, first: first.id, second: second.id };
        }),
      ),
    );
    assert.equal(orders.calls.length, 100);
    for (const call of orders.calls) {
      assert.equal(call.status, 200, `accepted by the unchanged verifier (${call.error})`);
      assert.equal(call.claims?.sub, 'consumer:orders');
      assert.equal(call.claims?.id, call.headers['x-msg'], 'each call carries the token of the scope that made it');
      assert.deepEqual(call.claims?.aud, ['orders']);
      assert.equal(call.claims?.scope, 'orders:read');
      assert.match(String(call.claims?.run), /^scope:[0-9a-f-]{36}$/);
    }
    seen.forEach((s, i) => assert.deepEqual([s.first, s.second], [`msg-${i}`, `msg-${i}`]));
    assert.equal(new Set(seen.map((s) => s.jti)).size, 50, 'one token per scope');
    assert.deepEqual(await liveTokens(), [], 'no token live at the end');
    // A token a scope sent is refused once the scope ended.
    const replay = await fetch(`${orders.url}/again`, { headers: { authorization: `Bearer ${orders.calls[0].token}` } });
    assert.equal(replay.status, 401);
    assert.equal(((await replay.json()) as { error: string }).error, 'revoked');
  });

  test('one token per service; a throwing fn still revokes; calls after the scope fail loudly', async () => {
    billing.calls = [];
    let leaked: (() => Promise<unknown>) | undefined;
    await assert.rejects(
      scopes.run({ subject: 'webhook:stripe', audience: ['orders', 'billing'], act: { sub: 'user:alice' } }, async (ctx) => {
        await ctx.service('billing').get('x');
        const held = ctx.token.all;
        assert.deepEqual(
          held.map((c) => c.aud),
          [['orders'], ['billing']],
        );
        leaked = () => ctx.service('billing').get('late');
        throw new Error('handler failed');
      }),
      /handler failed/,
    );
    assert.deepEqual(billing.calls[0].claims?.act, { sub: 'user:alice' });
    assert.equal(billing.calls[0].claims?.sub, 'webhook:stripe');
    assert.deepEqual(await liveTokens(), []);
    await assert.rejects(leaked!(), /outside a job run or scope|has ended/);
    await assert.rejects(
      scopes.run({ subject: 'consumer:x', audience: 'orders' }, (ctx) => ctx.service('billing').get('x')),
      /token is not for "billing"/,
    );
    assert.deepEqual(await liveTokens(), []);
  });

  test("the caller's signal aborts ctx.signal and revokes at once", async () => {
    const controller = new AbortController();
    let jti = '';
    const running = scopes.run({ subject: 'consumer:slow', audience: 'orders', signal: controller.signal }, async (ctx) => {
      jti = ctx.token.claims.jti;
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
      return ctx.signal.aborted;
    });
    await until(() => jti !== '', 5000, 'the scope to start');
    assert.equal(await client.exists(`${prefix}:token:${jti}`), 1);
    controller.abort(new Error('stop'));
    assert.equal(await running, true);
    assert.equal(await client.exists(`${prefix}:token:${jti}`), 0);
  });
});
