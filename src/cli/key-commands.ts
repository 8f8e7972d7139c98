// `jobscope token verify` and `jobscope keys generate`: the signing side's tools (check a token as a service would; write
// the next signing key of a rotation).
import path from 'node:path';
import { loadKeys, writeNewKey } from '../token/signing-keys.ts';
import { currentJwksAt } from '../token/jwks.ts';
import { LIFETIME_GRACE_MS } from '../token/mint.ts';
import { createJobTokenVerifier, TokenRejectedError } from '../token/verify.ts';
import { UsageError, type CliIO, type Env } from './common.ts';

/** Without --audience, a token is checked against its own first audience: every other check still applies. */
function firstAudience(token: string): string | undefined {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { aud?: string | string[] };
    return Array.isArray(payload.aud) ? payload.aud[0] : payload.aud;
  } catch {
    return undefined;
  }
}

export async function verifyCommand({ config }: Env, token: string | undefined, audience: string | undefined, io: CliIO): Promise<number> {
  if (!token) throw new UsageError('usage: jobscope token verify <jwt> [--audience A]');
  const keys = loadKeys(config);
  const verifier = createJobTokenVerifier({
    audience: audience || firstAudience(token) || '(none)',
    issuer: config.issuer,
    prefix: config.prefix,
    redis: config.redisUrl,
    // This runner's cap, not the verifier's default: tokens it hands out are accepted whatever JOBSCOPE_TOKEN_MAX_LIFETIME is.
    maxLifetime: (config.tokenMaxLifetimeMs + LIFETIME_GRACE_MS) / 1000 + 5,
    // Configured keys plus keys retired by a rotation whose tokens may still be live (as GET /.well-known/jwks.json serves).
    ...(keys.alg === 'HS256' ? { secret: config.jwtSecret! } : { jwks: await currentJwksAt(keys, config.redisUrl, config.prefix) }),
  });
  try {
    const claims = await verifier.verify(token);
    io.out(JSON.stringify({ valid: true, claims }, null, 2));
    return 0;
  } catch (err) {
    const e = err instanceof TokenRejectedError ? err : new TokenRejectedError('malformed', (err as Error).message);
    io.out(JSON.stringify({ valid: false, reason: e.code, message: e.message }, null, 2));
    return 1;
  } finally {
    await verifier.close();
  }
}

export function keysGenerateCommand(dirFlag: string | undefined, io: CliIO): number {
  const dir = path.resolve(dirFlag ?? 'keys');
  const { file, kid } = writeNewKey(dir);
  io.out(`wrote ${file} (kid ${kid})\nset JOBSCOPE_SIGNING_KEY_FILE=${dir} to sign with the newest key in that folder`);
  return 0;
}
