// One-line conveniences over createJobTokenVerifier. Neither caches anything: each call builds a verifier of its own.
import type { JobTokenClaims } from './claims.ts';
import type { JobTokenMiddleware } from './middleware.ts';
import { createJobTokenVerifier, type JobTokenVerifier, type VerifyOptions } from './verifier.ts';

/** The verifiers requireJobToken built and nobody has closed yet: what closeVerifiers() closes. */
const built = new Set<JobTokenVerifier>();

/**
 * `createJobTokenVerifier(options).middleware()`: one verifier (keys, JWKS cache, Redis connection) per call, so call it
 * once per route at start-up, never per request. Several routes on one service share better through one verifier:
 * `const v = createJobTokenVerifier(options); app.use(v.middleware()); app.post(path, v.middleware({ scope }), ...)`.
 */
export function requireJobToken(options: VerifyOptions): JobTokenMiddleware {
  const verifier = createJobTokenVerifier(options);
  const close = verifier.close.bind(verifier);
  const tracked: JobTokenVerifier = Object.assign(verifier, {
    close: () => {
      built.delete(tracked);
      return close();
    },
  });
  built.add(tracked);
  return tracked.middleware();
}

/**
 * Verifies one token with a verifier built for this call and closed after it (a Redis URL means one connection per call,
 * a `jwksUrl` one JWKS fetch per call). For scripts and one-off checks; a service builds one with createJobTokenVerifier.
 */
export async function verifyJobToken(token: string, options: VerifyOptions): Promise<JobTokenClaims> {
  const verifier = createJobTokenVerifier(options);
  try {
    return await verifier.verify(token);
  } finally {
    await verifier.close();
  }
}

/** Closes every verifier that requireJobToken built and that is not closed yet (their Redis connections), e.g. on shutdown. */
export async function closeVerifiers(): Promise<void> {
  const all = [...built];
  built.clear();
  await Promise.all(all.map((v) => v.close()));
}
