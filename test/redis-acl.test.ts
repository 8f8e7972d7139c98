// The Redis user the README gives to services that check liveness in the runner's Redis: created on a private redis-server
// with exactly the README's ACL rule, it verifies a real token (minted for a real run, revoked by cancelling the run), and
// it can do nothing else: no other command, no other key, not even reading or deleting the token keys it checks.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { createJobTokenVerifier, type JobTokenVerifier } from '../src/token/verify.ts';
import { heldToken, heldTokenJob, jobscopeFixture, type Fixture } from './helpers/fixture.ts';

const PREFIX = 'acl';
const USER = 'jobscope-verifier';
const PASSWORD = 'verifier-password-0123456789abcdef';
/** The README's rule, word for word (with PREFIX for `jobscope` and PASSWORD for the password). */
const ACL_RULE = `on >${PASSWORD} resetkeys %R~${PREFIX}:token:* resetchannels -@all +exists`;

let fx: Fixture;
let admin: Redis;
let limited: Redis;
let verifier: JobTokenVerifier;
/** The runner's public keys, as its server serves them. */
let jwksUrl: string;

/** A live token of a real run of `hold` (which keeps its token and runs until cancelled). */
const liveToken = async () => heldToken(await fx.trigger('hold'));

before(async () => {
  fx = await jobscopeFixture({
    jobs: { 'hold.ts': heldTokenJob() },
    env: { JOBSCOPE_PREFIX: PREFIX },
    workers: true,
    server: true,
  });
  // The test's own connection is the default (all-powerful) user.
  admin = fx.redis;
  await admin.call('ACL', 'SETUSER', USER, ...ACL_RULE.split(' '));
  jwksUrl = `${fx.server.url}/.well-known/jwks.json`;
  const url = `redis://${USER}:${PASSWORD}@127.0.0.1:${fx.redisServer.port}`;
  verifier = createJobTokenVerifier({ audience: 'svc', jwksUrl, redis: url, prefix: PREFIX });
  // The same credentials by hand, to try everything else.
  limited = new Redis(url, { maxRetriesPerRequest: 1, enableReadyCheck: false, disableClientInfo: true });
  limited.on('error', () => {});
  // Connected before the tests, so the only connection a first verification opens is the verifier's.
  if (limited.status !== 'ready') await new Promise((resolve) => limited.once('ready', resolve));
});

after(async () => {
  await verifier?.close();
  limited?.disconnect();
  await fx?.close();
});

/** The server's clients, by id: `user=<name>` says whom each one logged in as. */
const clients = async () =>
  new Map(
    ((await admin.client('LIST')) as string)
      .trim()
      .split('\n')
      .map((line) => [/^id=(\d+)/.exec(line)![1], line] as const),
  );

const noperm = async (what: string, command: () => Promise<unknown>) =>
  assert.rejects(command(), (err: Error) => /NOPERM/.test(err.message), `${what} must be refused with NOPERM`);

describe('a Redis user that can only check token liveness', () => {
  test('verifies a real token through that user: accepted while live, revoked after', async () => {
    const minted = await liveToken();
    const before = await clients();
    assert.equal((await verifier.verify(minted.raw)).jti, minted.claims.jti);
    // The one connection its first token opened really is that user (and the next test shows all that user cannot do).
    const opened = [...(await clients())].filter(([id]) => !before.has(id)).map(([, line]) => line);
    assert.equal(opened.length, 1, opened.join('\n'));
    assert.match(opened[0], new RegExp(`user=${USER} `));
    // Cancelling the run revokes its token at once.
    await fx.client.cancel(minted.runId, 'test');
    await assert.rejects(verifier.verify(minted.raw), { code: 'revoked' });
  });

  test('cannot read, write or delete the token keys, nor touch any other key, nor run other commands', async () => {
    const minted = await liveToken();
    const tokenKey = `${PREFIX}:token:${minted.claims.jti}`;
    assert.equal(await limited.exists(tokenKey), 1);
    await noperm('GET of a token key (its metadata)', () => limited.get(tokenKey));
    await noperm('PTTL of a token key', () => limited.pttl(tokenKey));
    await noperm('DEL of a token key (revoking)', () => limited.del(tokenKey));
    await noperm('SET of a token key (forging liveness)', () => limited.set(`${PREFIX}:token:forged`, '{}'));
    await noperm('EXPIRE of a token key (extending one)', () => limited.pexpire(tokenKey, 3_600_000));
    await noperm('EXISTS of another key', () => limited.exists(`${PREFIX}:jwks`));
    await noperm('EXISTS of another prefix', () => limited.exists(`other:token:${minted.claims.jti}`));
    await noperm('KEYS', () => limited.keys('*'));
    await noperm('SCAN', () => limited.scan(0));
    await noperm('GET of a BullMQ key', () => limited.get(`${PREFIX}:hold:id`));
    await noperm('FLUSHALL', () => limited.flushall());
    await noperm('CONFIG', () => limited.config('GET', '*'));
    await noperm('PUBLISH', () => limited.publish(`${PREFIX}:events`, 'x'));
    await noperm('EVAL', () => limited.eval('return 1', 0));
    await noperm('INFO', () => limited.info());
    await noperm('ACL WHOAMI (it may not even ask who it is)', () => limited.call('ACL', 'WHOAMI'));
    // Nothing changed: the token is still live and verifies.
    assert.equal(await admin.exists(tokenKey), 1);
    assert.equal((await verifier.verify(minted.raw)).jti, minted.claims.jti);
  });

  test('a verifier configured with another prefix gets NOPERM from Redis: 503 unavailable, never accepted', async () => {
    const minted = await liveToken();
    const url = `redis://${USER}:${PASSWORD}@127.0.0.1:${fx.redisServer.port}`;
    const wrong = createJobTokenVerifier({ audience: 'svc', jwksUrl, redis: url, prefix: 'other' });
    try {
      await assert.rejects(wrong.verify(minted.raw), { code: 'unavailable' });
    } finally {
      await wrong.close();
    }
  });
});
