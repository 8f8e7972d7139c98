// The Signer's two ways of signing ES256 tokens (inline, and in batches on its worker thread), and when `auto` uses the
// thread. Both ways must give tokens jsonwebtoken verifies with the public key, each carrying its own claims.
import assert from 'node:assert/strict';
import { randomUUID, generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import jwt from 'jsonwebtoken';
import { loadConfig } from '../src/config.ts';
import type { TokenClaims } from '../src/interfaces.ts';
import { Signer, useSigningThread } from '../src/token/signer.ts';
import type { SigningKey } from '../src/token/signing-keys.ts';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const key: SigningKey = { kid: 'k1', alg: 'ES256', key: privateKey, verifyKey: publicKey };

function claims(i: number): TokenClaims {
  const iat = Math.floor(Date.now() / 1000);
  return {
    iss: 'jobscope',
    sub: 'job:j',
    aud: ['svc'],
    scope: 'x:read',
    jti: randomUUID(),
    iat,
    nbf: iat,
    exp: iat + 60,
    run: `j:${i}`,
    att: 1,
  };
}

function verified(raw: string, expected: TokenClaims): void {
  const got = jwt.verify(raw, publicKey, { algorithms: ['ES256'], audience: 'svc', issuer: 'jobscope', complete: true });
  assert.equal(got.header.kid, 'k1');
  assert.equal((got.header as { typ?: string }).typ, 'at+jwt');
  assert.deepEqual(got.payload, expected);
}

describe('Signer', () => {
  test('with its thread, tokens of overlapping runs are signed there, in one batch, and verify with the public key', async () => {
    const signer = new Signer(key, true);
    try {
      const all = Array.from({ length: 40 }, (_, i) => claims(i));
      const signed = all.map((c) => signer.sign(c, true));
      assert.ok(
        signed.every((s) => s instanceof Promise),
        'a busy ES256 signature goes to the thread (a promise, not an inline string)',
      );
      const raws = await Promise.all(signed);
      raws.forEach((raw, i) => verified(raw, all[i]));
      assert.equal(new Set(raws).size, raws.length);
      // A lone run (nothing else being minted) is signed inline, thread or not.
      const lone = claims(99);
      const inline = signer.sign(lone, false);
      assert.equal(typeof inline, 'string');
      verified(inline as string, lone);
    } finally {
      await signer.close();
    }
  });

  test('without its thread, every token is signed inline', async () => {
    const signer = new Signer(key, false);
    const c = claims(1);
    const raw = signer.sign(c, true);
    assert.equal(typeof raw, 'string');
    verified(raw as string, c);
    await signer.close();
  });

  test('auto uses the thread only when the host has a core for it beside the main thread (and beside a local Redis)', () => {
    assert.equal(useSigningThread('auto', 'redis://127.0.0.1:6379', 2), false, '2 cores shared with a local redis-server');
    assert.equal(useSigningThread('auto', 'redis://localhost:6379', 3), true);
    assert.equal(useSigningThread('auto', 'redis://redis.internal:6379', 2), true, 'Redis elsewhere: the second core is free');
    assert.equal(useSigningThread('auto', 'redis://redis.internal:6379', 1), false);
    assert.equal(useSigningThread('auto', 'redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster', 2), false);
    assert.equal(useSigningThread('auto', 'redis+cluster://10.0.0.1:7000,10.0.0.2:7000', 2), true);
    assert.equal(useSigningThread('on', 'redis://127.0.0.1:6379', 1), true);
    assert.equal(useSigningThread('off', 'redis://redis.internal:6379', 64), false);
  });

  test('JOBSCOPE_SIGNING_THREAD takes auto, on or off; anything else is refused with the choices', () => {
    assert.equal(loadConfig({}).signingThread, 'auto');
    assert.equal(loadConfig({ JOBSCOPE_SIGNING_THREAD: 'OFF' }).signingThread, 'off');
    assert.throws(() => loadConfig({ JOBSCOPE_SIGNING_THREAD: 'maybe' }), /JOBSCOPE_SIGNING_THREAD: "maybe" is not auto, on or off/);
  });
});
