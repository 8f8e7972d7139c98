// Key rotation end to end: several signing keys, the runner's real JWKS route keeping a retired key until its tokens can no
// longer be live (even after its file is removed), unknown kids refused, the verifier's JWKS refetch rate limit counted on a
// real HTTP server, and `jobscope token verify` / `jobscope keys generate` run as child processes. Where a token's exact
// lifetime is the point (a 2 s one expiring, a retired key's tokens), the runner's minter makes it; elsewhere tokens come
// from real runs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { Runtime } from '../src/runtime/runtime.ts';
import { canonicalJwk, PUBLISH_HEADROOM_MS, publishedJwks } from '../src/token/jwks.ts';
import { RedisKeys } from '../src/run/redis-keys.ts';
import { keyFilesOf, writeNewKey } from '../src/token/signing-keys.ts';
import type { MintRequest } from '../src/token/mint.ts';
import { closeVerifiers } from '../src/token/verify.ts';
import { runCli, type CliResult } from './helpers/cli.ts';
import { heldToken, heldTokenJob, jobscopeFixture, type Fixture, type WorkersOption } from './helpers/fixture.ts';
import { monitorRedis } from './helpers/redis.ts';
import { ROOT } from './helpers/runtime.ts';
import { bearer, call, claims, ecPair, es256, expressService, markLive } from './helpers/tokens.ts';

const PREFIX = 'rot';
const TMP = path.join(ROOT, '.jobscope', 'test-tmp');

let fx: Fixture;
let client: Redis;
let keysDir: string;
/** A live token signed with the key that the rotation retires. */
let longA: string;
const servers: http.Server[] = [];

async function service(opts: Parameters<typeof expressService>[0]) {
  const s = await expressService(opts);
  servers.push(s.server);
  return s;
}

function listen(server: http.Server): Promise<string> {
  servers.push(server);
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
  );
}

/** A runner signing with `keyFiles` on the fixture's Redis and jobs (closed with the fixture), serving `workers`. */
function runtimeWith(keyFiles: string, workers?: WorkersOption): Promise<Runtime> {
  return fx.another({ env: { JOBSCOPE_PREFIX: PREFIX, JOBSCOPE_SIGNING_KEY_FILE: keyFiles }, workers });
}

const mintReq = (lifetimeMs: number): MintRequest => ({ job: 'noop', run: 'noop:1', attempt: 1, audience: ['svc'], scope: [], lifetimeMs });

before(async () => {
  fx = await jobscopeFixture({
    jobs: {
      'noop.ts': `export default { token: { audience: ['svc'] }, async run() { return 1; } };`,
      // Its runs' tokens live 60 s (its timeout plus the 30 s grace, LIFETIME_GRACE_MS).
      'brief.ts': `export default { token: { audience: ['svc'] }, timeout: '30s', concurrency: 50, async run() { return 1; } };`,
      // Its run's token lives PUBLISH_HEADROOM_MS + 120 s (690 s + the grace), under the default 15 min cap.
      'long.ts': heldTokenJob(`token: { audience: ['svc'] }, timeout: '690s'`),
      'hold.ts': heldTokenJob(),
    },
    env: { JOBSCOPE_PREFIX: PREFIX },
  });
  // The fixture's own connection, for what this file checks in Redis on purpose: the published keys' sorted set.
  client = fx.redis;
  keysDir = mkdtempSync(path.join(TMP, 'keys-'));
});

after(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  await closeVerifiers();
  await fx?.close();
  if (keysDir) rmSync(keysDir, { recursive: true, force: true });
});

describe('rotation', () => {
  let jwksUrl: string;
  let kidA: string;
  let kidB: string;
  let runtimeB: Runtime;

  test('several keys: a directory expands by name, the newest signs, all are published', async () => {
    const a = writeNewKey(keysDir);
    await new Promise((r) => setTimeout(r, 5));
    const b = writeNewKey(keysDir);
    assert.deepEqual(keyFilesOf([keysDir]), [a.file, b.file]);
    const both = await runtimeWith(keysDir);
    assert.equal(both.keys.current.kid, b.kid);
    assert.deepEqual(
      both.keys.jwks().keys.map((k) => k.kid),
      [a.kid, b.kid],
    );
    // A comma list: the last one signs.
    const reversed = await runtimeWith(`${b.file},${a.file}`);
    assert.equal(reversed.keys.current.kid, a.kid);
    rmSync(a.file);
    rmSync(b.file);
  });

  test('a token signed with the previous key keeps verifying after rotation, even with its file removed, until its exp', async () => {
    const a = writeNewKey(keysDir);
    kidA = a.kid;
    const runtimeA = await runtimeWith(keysDir);
    assert.equal(runtimeA.keys.current.kid, kidA);
    const shortA = await runtimeA.minter.mint(mintReq(2000));
    const long = await runtimeA.minter.mint(mintReq(180_000));
    longA = long.raw;
    // The key is recorded in Redis until at least the exp of every token it signed.
    const score = Number(await client.zscore(new RedisKeys(PREFIX).jwks, canonicalJwk(runtimeA.keys.current)));
    assert.ok(score >= long.claims.exp * 1000, 'published until the last exp');

    // Rotate: a new key, the old file removed, a runner restarted on the directory.
    await new Promise((r) => setTimeout(r, 5));
    const b = writeNewKey(keysDir);
    kidB = b.kid;
    rmSync(a.file);
    runtimeB = await runtimeWith(keysDir);
    assert.equal(runtimeB.keys.current.kid, kidB);
    assert.deepEqual(
      runtimeB.keys.jwks().keys.map((k) => k.kid),
      [kidB],
    );

    // The runner's real JWKS route serves the configured key and the retired one.
    jwksUrl = `${(await fx.startServer({}, runtimeB)).url}/.well-known/jwks.json`;
    const doc = (await (await fetch(jwksUrl)).json()) as { keys: { kid: string; d?: string }[] };
    assert.deepEqual(
      doc.keys.map((k) => k.kid),
      [kidB, kidA],
    );
    assert.ok(
      doc.keys.every((k) => k.d === undefined),
      'no private part published',
    );

    const svc = await service({ audience: 'svc', jwksUrl, redis: fx.redisUrl, prefix: PREFIX, clockTolerance: 0 });
    const tokenB = await runtimeB.minter.mint(mintReq(60_000));
    assert.equal((await call(`${svc.url}/data`, bearer(tokenB.raw))).status, 200);
    assert.equal((await call(`${svc.url}/data`, bearer(shortA.raw))).status, 200);
    assert.equal((await call(`${svc.url}/data`, bearer(longA))).status, 200);
    // Until its expiry, and not after.
    await new Promise((r) => setTimeout(r, shortA.claims.exp * 1000 - Date.now() + 50));
    const expired = await call(`${svc.url}/data`, bearer(shortA.raw));
    assert.equal(expired.body.error, 'expired');
    assert.equal((await call(`${svc.url}/data`, bearer(longA))).status, 200);

    // Once every token of the old key can have expired (its last exp plus the publishing headroom), it leaves the JWKS.
    const until = Number(await client.zscore(new RedisKeys(PREFIX).jwks, canonicalJwk(runtimeA.keys.current)));
    assert.ok(until >= long.claims.exp * 1000 && until <= long.claims.exp * 1000 + PUBLISH_HEADROOM_MS);
    assert.ok((await publishedJwks(client, PREFIX)).some((k) => k.kid === kidA));
    // On a copy (listing prunes): still there just before `until`, gone just after.
    await client.copy(new RedisKeys(PREFIX).jwks, new RedisKeys('rot-copy').jwks);
    assert.ok((await publishedJwks(client, 'rot-copy', until - 1)).some((k) => k.kid === kidA));
    assert.ok(!(await publishedJwks(client, 'rot-copy', until + 1)).some((k) => k.kid === kidA));
  });

  test('publishing the signing key costs one Redis write per headroom period, not one per token', async () => {
    const runtime = await runtimeWith(keysDir, ['brief', 'long']);
    // Writes to the published keys alone (the live-token index is a sorted set too: INFO's ZADD count mixes them),
    // as MONITOR shows them, those run inside scripts included.
    const writes: string[] = [];
    const monitor = await monitorRedis(fx.redisUrl, (args) => {
      if (args[0].toLowerCase() === 'zadd' && args[1] === new RedisKeys(PREFIX).jwks) writes.push(args.join(' '));
    });
    const settled = () => new Promise((r) => setTimeout(r, 200));
    try {
      // 50 runs, each given a token for 60 s.
      const runIds = await Promise.all(Array.from({ length: 50 }, () => fx.trigger('brief')));
      for (const runId of runIds) assert.equal((await fx.wait(runId)).state, 'completed');
      await settled();
      assert.equal(writes.length, 1, writes.join('\n'));
      // A token that would outlive the recorded time extends it (one more write), and the key's record covers it.
      const long = await heldToken(await fx.trigger('long'));
      assert.equal(long.claims.exp - long.claims.iat, (PUBLISH_HEADROOM_MS + 120_000) / 1000);
      await settled();
      assert.equal(writes.length, 2, writes.join('\n'));
      const until = Number(await client.zscore(new RedisKeys(PREFIX).jwks, canonicalJwk(runtime.keys.current)));
      assert.ok(until >= long.claims.exp * 1000);
      // The brief runs' tokens ended with them; cancelling the long run revokes its own.
      await fx.client.cancel(long.runId, 'test');
    } finally {
      monitor.close();
    }
  });

  test('a token signed with an unknown key is refused: unknown_key', async () => {
    const svc = await service({ audience: 'svc', jwksUrl, redis: fx.redisUrl, prefix: PREFIX });
    const stranger = ecPair('not-published');
    const payload = claims();
    await markLive(client, PREFIX, payload.jti);
    const res = await call(`${svc.url}/data`, bearer(es256(stranger, payload)));
    assert.equal(res.status, 401);
    assert.equal(res.body.error, 'unknown_key');
    // Same key material under a published kid: the signature check decides.
    const forged = await call(`${svc.url}/data`, bearer(es256({ ...stranger, kid: kidB }, payload)));
    assert.equal(forged.body.error, 'bad_signature');
  });
});

describe('JWKS refetch rate limit', () => {
  test('unknown kids trigger at most one fetch per interval; a real new key is picked up after it', async () => {
    let served = 0;
    let doc: { keys: unknown[] } = { keys: [] };
    const known = ecPair('known');
    const rotated = ecPair('rotated-in');
    const jwk = (p: typeof known) => ({ ...p.publicKey.export({ format: 'jwk' }), kid: p.kid, alg: 'ES256', use: 'sig' });
    doc = { keys: [jwk(known)] };
    const url = await listen(
      http.createServer((_req, res) => {
        served++;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(doc));
      }),
    );
    const svc = await service({
      audience: 'svc',
      jwksUrl: `${url}/jwks.json`,
      redis: fx.redisUrl,
      prefix: PREFIX,
      jwksRefetchIntervalMs: 1000,
    });
    const tokenFor = async (pair: typeof known) => {
      const payload = claims();
      await markLive(client, PREFIX, payload.jti);
      return es256(pair, payload);
    };

    // The burst's tokens are made first: 200 key pairs take a while on a busy machine.
    const bogus = await Promise.all(Array.from({ length: 200 }, (_, i) => tokenFor(ecPair(`bogus-${i}`))));
    // First use: one fetch, the known key verifies.
    assert.equal((await call(`${svc.url}/data`, bearer(await tokenFor(known)))).status, 200);
    assert.equal(served, 1);
    const fetchedAt = Date.now();

    // A burst of 200 bogus kids at once: no fetch at all while the last one was < 1 s ago, at most one per second after
    // (a loaded machine takes seconds to verify 200 tokens).
    const burst = await Promise.all(bogus.map((t) => call(`${svc.url}/data`, bearer(t))));
    assert.ok(burst.every((r) => r.body.error === 'unknown_key'));
    const burstMs = Date.now() - fetchedAt;
    assert.ok(served - 1 <= Math.ceil(burstMs / 1000), `served ${served} during a burst of ${burstMs} ms`);

    // A steady flood for 2.6 s: at most one fetch per second.
    const servedBefore = served;
    const started = Date.now();
    let sent = 0;
    while (Date.now() - started < 2600) {
      const res = await call(`${svc.url}/data`, bearer(await tokenFor(ecPair(`flood-${sent++}`))));
      assert.equal(res.body.error, 'unknown_key');
      await new Promise((r) => setTimeout(r, 20));
    }
    const elapsed = Date.now() - started;
    assert.ok(sent > 20, `sent ${sent}`);
    assert.ok(served - servedBefore <= Math.ceil(elapsed / 1000) + 1, `served ${served - servedBefore} in ${elapsed} ms`);
    assert.ok(served - 1 >= 1, 'it does refetch once the interval has passed');

    // Rotation on the runner: after the interval, the first token with the new kid refetches once and is accepted.
    doc = { keys: [jwk(known), jwk(rotated)] };
    await new Promise((r) => setTimeout(r, 1050));
    const before = served;
    assert.equal((await call(`${svc.url}/data`, bearer(await tokenFor(rotated)))).status, 200);
    assert.equal(served, before + 1);
    // Known keys never cause a fetch.
    for (let i = 0; i < 20; i++) await call(`${svc.url}/data`, bearer(await tokenFor(known)));
    assert.equal(served, before + 1);
  });
});

function cli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return runCli(args, {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    JOBSCOPE_STATE_DIR: path.join(TMP, 'state'),
    LOG_LEVEL: 'warn',
    ...env,
  });
}

describe('jobscope token verify / keys generate (the real bin)', () => {
  before(() => {
    // The bin runs dist/ when it exists (`npm test` builds first); a stale build would test old code.
    const newest = (d: string): number =>
      Math.max(
        ...readdirSync(d, { withFileTypes: true }).map((e) =>
          e.isDirectory() ? newest(path.join(d, e.name)) : statSync(path.join(d, e.name)).mtimeMs,
        ),
      );
    const built = path.join(ROOT, 'dist', 'cli.js');
    if (existsSync(built) && statSync(built).mtimeMs < newest(path.join(ROOT, 'src'))) {
      execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
        cwd: ROOT,
        stdio: 'ignore',
      });
    }
  });

  test('exit 0 with the claims for a live token (also one signed with the retired key); exit 1 with the reason otherwise', async () => {
    const env = { REDIS_URL: fx.redisUrl, JOBSCOPE_PREFIX: PREFIX, JOBSCOPE_SIGNING_KEY_FILE: keysDir };
    await runtimeWith(keysDir, ['hold']);
    const live = await heldToken(await fx.trigger('hold'));

    const ok = await cli(['token', 'verify', live.raw], env);
    assert.equal(ok.code, 0, ok.stderr);
    const out = JSON.parse(ok.stdout) as { valid: boolean; claims: { jti: string } };
    assert.equal(out.valid, true);
    assert.equal(out.claims.jti, live.claims.jti);
    assert.equal((await cli(['token', 'verify', live.raw, '--audience', 'svc'], env)).code, 0);

    // Signed with key A, whose file is gone: verified through the published JWKS.
    const retired = await cli(['token', 'verify', longA], env);
    assert.equal(retired.code, 0, retired.stdout + retired.stderr);

    const reason = async (token: string, extra: string[] = []) => {
      const r = await cli(['token', 'verify', token, ...extra], env);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const body = JSON.parse(r.stdout) as { valid: boolean; reason: string };
      assert.equal(body.valid, false);
      // The token is never echoed back.
      assert.ok(!r.stdout.includes(token) && !r.stderr.includes(token));
      return body.reason;
    };
    assert.equal(await reason(live.raw, ['--audience', 'billing']), 'bad_audience');
    assert.equal(await reason('not-a-token'), 'malformed');
    const stranger = es256(ecPair('nobody'), claims());
    assert.equal(await reason(stranger), 'unknown_key');
    // Cancelling its run revokes the token at once.
    await fx.client.cancel(live.runId, 'test');
    assert.equal(await reason(live.raw), 'revoked');

    const usage = await cli(['token', 'verify'], env);
    assert.equal(usage.code, 2);
  });

  test('keys generate writes a new P-256 key (0600) that sorts after the older ones', async () => {
    const out = mkdtempSync(path.join(TMP, 'gen-'));
    try {
      const first = await cli(['keys', 'generate', '--dir', out], {});
      assert.equal(first.code, 0, first.stderr);
      const second = await cli(['keys', 'generate', '--dir', out], {});
      assert.equal(second.code, 0, second.stderr);
      const files = readdirSync(out).sort();
      assert.equal(files.length, 2);
      assert.match(second.stdout, new RegExp(files[1]));
      assert.equal(statSync(path.join(out, files[0])).mode & 0o777, 0o600);
      const runtime = await runtimeWith(out);
      assert.match(second.stdout, new RegExp(`kid ${runtime.keys.current.kid.replace(/[-]/g, '\\-')}`));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
