// The verifier's option errors say what was given: `redis: process.env.REDIS_URL` with REDIS_URL unset is undefined.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createJobTokenVerifier } from '../src/token/verify.ts';

test('a liveness option left undefined (an unset REDIS_URL) is named as undefined', () => {
  const base = { audience: 'svc', secret: 'x'.repeat(32) };
  assert.throws(
    () => createJobTokenVerifier({ ...base, redis: undefined }),
    /give exactly one of `redis`.*\(redis is undefined, introspect is undefined; a value read from an unset environment variable such as REDIS_URL is undefined\)/,
  );
  assert.throws(() => createJobTokenVerifier({ ...base, redis: '' }), /redis is an empty string/);
});
