// The hand-written token scope jobscope replaces, as the benchmark's variants run it (variant.ts): the claims jobscope
// signs, and the scope around a run (naive, naive-hs256, and the naive end-to-end variant).
import { createSecretKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import type { Job } from 'bullmq';
import { Redis } from 'ioredis';
import jwt from 'jsonwebtoken';

/** The claims jobscope signs (same shape and size), so the ceiling and the naive scope sign what jobscope signs. */
export function benchClaims(job: Job) {
  const iat = Math.floor(Date.now() / 1000);
  return {
    iss: 'jobscope',
    sub: 'job:noop',
    aud: ['svc'],
    scope: 'x:read',
    jti: randomUUID(),
    iat,
    nbf: iat,
    exp: iat + 930,
    run: `noop:${job.id}`,
    att: 1,
  };
}

/**
 * The hand-written token scope jobscope replaces (notes/BASELINE.md): sign, `SET PX` the token's key, run, `DEL` in
 * `finally`, on an auto-pipelined connection. Keys `naive:token:<jti>`: what a verifier with prefix `naive` checks.
 */
export function naiveScope(redisUrl: string, alg: 'ES256' | 'HS256', sharedSecret: string) {
  // Keys as KeyObjects, built once, as jobscope's are (jsonwebtoken given a string secret costs ~0.4 ms more per token).
  const key = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' }) : undefined;
  const secret = createSecretKey(Buffer.from(sharedSecret));
  const tokens = new Redis(redisUrl, { enableAutoPipelining: true });
  const header = { alg, typ: 'at+jwt', kid: 'bench' };
  return {
    publicKeyPem: () => key!.publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    /** Signs the run's token and sets its key (`live` settles when it is set). */
    begin(job: Job) {
      const c = benchClaims(job);
      const token = jwt.sign(c, key ? key.privateKey : secret, { algorithm: alg, header });
      return { token, jti: c.jti, live: tokens.set(`naive:token:${c.jti}`, '1', 'PX', 60_000) };
    },
    end: (jti: string) => tokens.del(`naive:token:${jti}`),
    close: () => tokens.disconnect(),
  };
}
