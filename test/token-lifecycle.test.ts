// A run's token stops working the moment the run ends (success, failure, timeout, cancel), not at its exp; a run longer
// than the token lifetime gets a fresh token before expiry. Checked end to end: real Redis, a real runtime whose jobs call a
// real Express service on 127.0.0.1 that accepts them with requireJobToken (keys from the server's JWKS route over HTTP),
// and the captured tokens presented again after the run.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import type { Redis } from 'ioredis';
import { parseRunId } from '../src/run/model.ts';
import type { Runtime } from '../src/runtime/runtime.ts';
import { closeVerifiers, requireJobToken, type JobTokenClaims } from '../src/token/verify.ts';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';
import { freePort, monitorRedis } from './helpers/redis.ts';
import { bearer, call } from './helpers/tokens.ts';

const PREFIX = 'lc';
/** The channel every worker listens on for cancels (RedisKeys.cancelChannel). */
const CANCEL_CHANNEL = `${PREFIX}:cancel`;

const JOBS = {
  'ok.ts': `export default { token: { audience: ['svc'], scope: ['data:read'] },
    async run(ctx) { const r = await ctx.service('svc').get('data', { headers: { 'x-run': ctx.run.id } }).json(); return { jti: r.jti }; } };`,
  'boom.ts': `export default { token: { audience: ['svc'] },
    async run(ctx) { await ctx.service('svc').get('data', { headers: { 'x-run': ctx.run.id } }); throw new Error('the job failed'); } };`,
  // Ignores its signal: the token must die anyway when the timeout ends the attempt.
  'stuck.ts': `export default { token: { audience: ['svc'] }, timeout: '800ms',
    async run(ctx) { await ctx.service('svc').get('data', { headers: { 'x-run': ctx.run.id } }); await new Promise(() => {}); } };`,
  // No timeout, ignores its signal: only a cancel ends it.
  'forever.ts': `export default { token: { audience: ['svc'] },
    async run(ctx) { await ctx.service('svc').get('data', { headers: { 'x-run': ctx.run.id } }); await new Promise(() => {}); } };`,
  // No timeout, runs ~5 s with a 3 s token lifetime, calling the service all the time: every call must be accepted.
  'long.ts': `export default { token: { audience: ['svc'] },
    async run(ctx) {
      const jtis = [];
      const end = Date.now() + 5000;
      let calls = 0;
      while (Date.now() < end) {
        const r = await ctx.service('svc').get('data', { headers: { 'x-run': ctx.run.id } }).json();
        calls++;
        if (!jtis.includes(r.jti)) jtis.push(r.jti);
        await new Promise((res) => setTimeout(res, 100));
      }
      return { calls, jtis, run: ctx.run.id };
    } };`,
};

interface Accepted {
  token: string;
  claims: JobTokenClaims;
  at: number;
}

let fx: Fixture;
let runtime: Runtime;
let service: http.Server;
let serviceUrl: string;
const accepted: Accepted[] = [];
const events: { type: 'minted' | 'revoked' | 'end'; jti?: string; runId?: string; at: number }[] = [];

function listen(server: http.Server, port: number): Promise<string> {
  return new Promise((resolve) =>
    server.listen(port, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
  );
}

before(async () => {
  // The service's address first (the runner is configured with it); it starts once the runner's server serves the JWKS.
  const servicePort = await freePort();
  fx = await jobscopeFixture({
    jobs: JOBS,
    env: { JOBSCOPE_PREFIX: PREFIX, JOBSCOPE_SERVICES: `svc=http://127.0.0.1:${servicePort}`, JOBSCOPE_TOKEN_MAX_LIFETIME: '3s' },
    server: true,
  });
  ({ runtime } = fx);
  // The runner's JWKS over HTTP: GET /.well-known/jwks.json.
  const jwksUrl = `${fx.server.url}/.well-known/jwks.json`;
  const app = express();
  app.get('/data', requireJobToken({ audience: 'svc', jwksUrl, redis: fx.redisUrl, prefix: PREFIX }), (req, res) => {
    accepted.push({ token: req.headers.authorization!.slice('Bearer '.length), claims: req.jobToken!, at: Date.now() });
    res.json({ jti: req.jobToken!.jti });
  });
  service = http.createServer(app);
  serviceUrl = await listen(service, servicePort);
  const workers = await runtime.startWorkers();
  workers.on('token:minted', ({ jti }) => events.push({ type: 'minted', jti, at: Date.now() }));
  workers.on('token:revoked', ({ jti }) => events.push({ type: 'revoked', jti, at: Date.now() }));
  workers.on('run:end', ({ runId }) => events.push({ type: 'end', runId, at: Date.now() }));
});

after(async () => {
  await fx?.close();
  await closeVerifiers();
  service?.closeAllConnections();
  service?.close();
});

const ofRun = (runId: string) => accepted.filter((a) => a.claims.run === runId);

/** Presents a captured token to the service again: it must be refused as revoked (liveness), not as expired. */
async function assertRevoked(token: string) {
  const res = await call(`${serviceUrl}/data`, bearer(token));
  assert.equal(res.status, 401);
  assert.equal(res.body.error, 'revoked', JSON.stringify(res.body));
}

describe('a token stops working the moment its run ends', () => {
  test('success', async () => {
    const runId = await fx.trigger('ok');
    const report = await fx.wait(runId);
    assert.equal(report.state, 'completed');
    const [call1] = ofRun(runId);
    assert.ok(call1, 'the job reached the service with its token');
    assert.deepEqual(report.result, { jti: call1.claims.jti });
    assert.equal(call1.claims.sub, 'job:ok');
    assert.deepEqual(call1.claims.aud, ['svc']);
    await assertRevoked(call1.token);
    assert.equal(await fx.redis.exists(`${PREFIX}:token:${call1.claims.jti}`), 0);
  });

  test('failure', async () => {
    const runId = await fx.trigger('boom');
    const report = await fx.wait(runId);
    assert.equal(report.state, 'failed');
    assert.match(report.error ?? '', /the job failed/);
    await assertRevoked(ofRun(runId)[0].token);
  });

  test('timeout (the handler ignores its signal and never returns)', async () => {
    const runId = await fx.trigger('stuck');
    const report = await fx.wait(runId);
    assert.equal(report.state, 'failed');
    assert.match(report.error ?? '', /timed out/);
    await assertRevoked(ofRun(runId)[0].token);
  });

  test('cancel: revoked as soon as cancel() returns, while the handler still hangs; gone from the live list', async () => {
    const runId = await fx.trigger('forever');
    await until(() => ofRun(runId).length > 0, 10_000, 'the run to call the service');
    const { token, claims } = ofRun(runId)[0];
    assert.ok((await fx.api.tokens()).some((t) => t.jti === claims.jti && t.run === runId));
    // Still live while the run is.
    assert.equal((await call(`${serviceUrl}/data`, bearer(token))).status, 200);
    await fx.client.cancel(runId, 'test');
    await assertRevoked(token);
    assert.ok(!(await fx.api.tokens()).some((t) => t.run === runId));
    const report = await fx.wait(runId);
    assert.equal(report.state, 'failed');
  });
});

describe("in Redis, a run's tokens die before the run counts as ended", () => {
  // The worker does not wait for Redis's answer to the revocation before it completes the run (Execution.close): the two
  // are written to one connection in that order. Redis's own log of what it ran (MONITOR, a script's commands included)
  // must show the token's DEL before the run is added to its queue's completed or failed set.
  for (const [job, state] of [
    ['ok', 'completed'],
    ['boom', 'failed'],
  ] as const) {
    test(`${state === 'completed' ? 'success' : 'failure'}: the token's DEL, then the run's move to ${state}`, async () => {
      const ran: string[][] = [];
      const monitor = await monitorRedis(fx.redisUrl, (args) => ran.push(args));
      let revoked = -1;
      let ended = -1;
      try {
        const runId = await fx.trigger(job);
        assert.equal((await fx.wait(runId)).state, state);
        const { jti } = ofRun(runId)[0].claims;
        const { id } = parseRunId(runId);
        const isEnd = (a: string[]) => a[0].toUpperCase() === 'ZADD' && a[1] === `${PREFIX}:${job}:${state}` && a.includes(id);
        const isRevocation = (a: string[]) => a[0].toUpperCase() === 'DEL' && a.includes(`${PREFIX}:token:${jti}`);
        // MONITOR's feed is another connection than the one the wait read: it may still be on its way.
        await until(
          () => ran.some(isEnd) && ran.some(isRevocation),
          5_000,
          `the run's move to ${state} and its token's DEL in MONITOR's feed`,
        );
        revoked = ran.findIndex(isRevocation);
        ended = ran.findIndex(isEnd);
      } finally {
        monitor.close();
      }
      assert.ok(revoked < ended, `the run was ${state} (command ${ended}) before its token was revoked (command ${revoked})`);
    });
  }
});

describe('cancel on a host that does not hear it', () => {
  test('cancel() itself revokes the run tokens at once, even if the worker never learns of the cancel', async () => {
    const runId = await fx.trigger('forever');
    await until(() => ofRun(runId).length > 0, 10_000, 'the run to call the service');
    const { token } = ofRun(runId)[0];
    // Cut the worker off the cancel broadcast: only cancel()'s own revocation can kill the token now.
    const subscriber = (runtime as unknown as { subscriber: Redis }).subscriber;
    await subscriber.unsubscribe(CANCEL_CHANNEL);
    try {
      await fx.client.cancel(runId, 'test');
      await assertRevoked(token);
      assert.equal((await fx.run(runId)).state, 'active');
    } finally {
      await subscriber.subscribe(CANCEL_CHANNEL);
    }
    await fx.client.cancel(runId, 'test again');
    assert.equal((await fx.wait(runId)).state, 'failed');
  });
});

describe('re-mint before expiry', () => {
  test('a 5 s run with a 3 s token lifetime: every call accepted, same run, new jti, the old one revoked while the run goes on', async () => {
    const runId = await fx.trigger('long');
    await until(() => new Set(ofRun(runId).map((a) => a.claims.jti)).size >= 2, 10_000, 'a second token');
    const [first] = ofRun(runId);
    const second = ofRun(runId).find((a) => a.claims.jti !== first.claims.jti)!;
    // The run is still going; the first token is already dead.
    assert.equal((await fx.run(runId)).state, 'active');
    await until(async () => (await fx.redis.exists(`${PREFIX}:token:${first.claims.jti}`)) === 0, 1000, 'the old token to be revoked');
    await assertRevoked(first.token);
    assert.equal((await call(`${serviceUrl}/data`, bearer(second.token))).status, 200);

    const report = await fx.wait(runId, 20_000);
    assert.equal(report.state, 'completed', report.error ?? '');
    const result = report.result as { calls: number; jtis: string[]; run: string };
    assert.ok(result.calls >= 20, `calls: ${result.calls}`);
    assert.ok(result.jtis.length >= 2, `jtis: ${result.jtis.length}`);
    const calls = ofRun(runId);
    assert.ok(calls.every((a) => a.claims.run === runId && a.claims.att === 1 && a.claims.sub === 'job:long'));
    // Each token was minted with the 3 s lifetime and replaced before its exp.
    for (const [i, jti] of result.jtis.entries()) {
      const mine = calls.filter((a) => a.claims.jti === jti);
      assert.ok(mine[0].claims.exp - mine[0].claims.iat <= 3);
      assert.ok(
        mine.every((a) => a.at < mine[0].claims.exp * 1000),
        `token ${i} used after its exp`,
      );
      const revokedAt = events.find((e) => e.type === 'revoked' && e.jti === jti)?.at;
      assert.ok(revokedAt !== undefined, `token ${i} revoked`);
      if (i < result.jtis.length - 1) {
        const endAt = events.find((e) => e.type === 'end' && e.runId === runId)!.at;
        assert.ok(revokedAt < endAt, `token ${i} was revoked during the run, not at its end`);
      }
    }
    // The last token died with the run; earlier ones are refused too (revoked, or by now expired).
    await assertRevoked(calls.find((a) => a.claims.jti === result.jtis.at(-1))!.token);
    for (const { token } of calls) assert.equal((await call(`${serviceUrl}/data`, bearer(token))).status, 401);
  });
});
