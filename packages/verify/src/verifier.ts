// The verifier: built once per service (like jose's createRemoteJWKSet), it holds the keys, the JWKS cache and the liveness
// connection. Each token goes through these steps and is refused at the first that fails, with a stable reason code:
//   1. shape: a string of at most 8 KB, three canonical base64url parts (an empty signature is let through so that
//      `alg: none` is reported as such; it can never verify)
//   2. header (decoded by jsonwebtoken): `alg` exactly the configured one (ES256, or HS256 with a secret), `typ` at+jwt,
//      no `crit`; the key by `kid` (`jku`, `jwk`, `x5u`, `x5c` are never read)
//   3. jsonwebtoken: the signature, then exp and nbf with the clock tolerance, aud, iss
//   4. on the verified payload: required claims present and typed, iat not in the future, lifetime (exp - iat) capped
//   5. liveness: the jti is live in the runner's Redis, or the runner's introspection endpoint says active
//   6. the route's scopes (403)
import jwt from 'jsonwebtoken';
import type { Redis } from 'ioredis';
import { checkIssuedAt, checkLifetime, missingScopes, scopesOf, seconds, typedClaims, type JobTokenClaims } from './claims.ts';
import { TokenRejectedError } from './errors.ts';
import { keySource, type KeyOptions, type KeySource } from './key-source.ts';
import { liveness, type Liveness, type LivenessOptions } from './liveness.ts';
import { expressMiddleware, type JobTokenMiddleware } from './middleware.ts';

export interface VerifyOptions extends KeyOptions, LivenessOptions {
  /** This service's name: the token's `aud` must contain it. */
  audience: string;
  /** Expected `iss` (default `jobscope`; the runner's JOBSCOPE_ISSUER). */
  issuer?: string;
  /** Scopes every token must carry (all of them): a space-separated string or a list. Missing ones -> 403. */
  scope?: string | string[];
  /** Seconds of clock skew tolerated on exp/nbf/iat (default 5, at most 60). */
  clockTolerance?: number;
  /**
   * The longest lifetime (exp - iat) accepted, in seconds or as a duration ('15m'). Default: the runner's default cap
   * (15 min) plus its 30 s grace plus the clock tolerance. Raise it if the runner's JOBSCOPE_TOKEN_MAX_LIFETIME is higher.
   */
  maxLifetime?: number | string;
}

/** Per call: scopes required on top of the verifier's own `scope`. */
export interface ScopeOptions {
  scope?: string | string[];
}

export interface JobTokenVerifier {
  /** Verifies the token (every step above). Resolves to its claims; rejects with TokenRejectedError. */
  verify(token: string, opts?: ScopeOptions): Promise<JobTokenClaims>;
  /** An Express middleware on this verifier: 401/403/503 on refusal, `req.jobToken` on success. Build as many as you like. */
  middleware(opts?: ScopeOptions): JobTokenMiddleware;
  /** Closes the Redis connection if this verifier opened it (a client you passed in stays yours). */
  close(): Promise<void>;
  /** The Redis client liveness is checked on (undefined with introspection). */
  readonly redis: Redis | undefined;
  /** How many JWKS fetches this verifier started. */
  readonly jwksFetches: number;
}

const MAX_TOKEN_LENGTH = 8192;
const B64URL = /^[A-Za-z0-9_-]+$/;
/** The runner's defaults (JOBSCOPE_TOKEN_MAX_LIFETIME 15 min, and the 30 s it adds beyond a job's timeout). */
const RUNNER_MAX_LIFETIME_S = 15 * 60;
const RUNNER_GRACE_S = 30;

/** Strict base64url: the alphabet, no padding, and the canonical spelling (no spare bits set). */
function canonicalB64url(part: string): boolean {
  return B64URL.test(part) && Buffer.from(part, 'base64url').toString('base64url') === part;
}

/** Step 1: the compact-JWS shape, checked before any decoding. */
function checkShape(token: unknown): asserts token is string {
  if (typeof token !== 'string' || token.length === 0) throw new TokenRejectedError('missing', 'no token');
  if (token.length > MAX_TOKEN_LENGTH) throw new TokenRejectedError('malformed', 'token too long');
  const parts = token.split('.');
  if (parts.length !== 3) throw new TokenRejectedError('malformed', 'not a compact JWS (three base64url parts)');
  if (!canonicalB64url(parts[0]) || !canonicalB64url(parts[1]) || (parts[2] !== '' && !canonicalB64url(parts[2]))) {
    throw new TokenRejectedError('malformed', 'not a compact JWS (three canonical base64url parts)');
  }
}

// jsonwebtoken checks these claims only after the signature has verified: such an error means the payload is authentic.
const CLAIM_ERRORS = /^(jwt audience invalid|jwt issuer invalid|invalid nbf value|invalid exp value)/;
function isClaimError(err: unknown): err is jwt.VerifyErrors {
  return (
    err instanceof jwt.TokenExpiredError ||
    err instanceof jwt.NotBeforeError ||
    (err instanceof jwt.JsonWebTokenError && CLAIM_ERRORS.test(err.message))
  );
}

class Verifier implements JobTokenVerifier {
  private readonly audience: string;
  private readonly issuer: string;
  private readonly tolerance: number;
  private readonly maxLifetime: number;
  private readonly requiredScopes: string[];
  private readonly keys: KeySource;
  private readonly live: Liveness;

  constructor(opts: VerifyOptions) {
    if (!opts || typeof opts.audience !== 'string' || !opts.audience) throw new TypeError('verify: `audience` is required');
    const tolerance = opts.clockTolerance ?? 5;
    if (!Number.isFinite(tolerance) || tolerance < 0 || tolerance > 60) throw new TypeError('verify: `clockTolerance` is 0..60 seconds');
    const maxLifetime = opts.maxLifetime === undefined ? RUNNER_MAX_LIFETIME_S + RUNNER_GRACE_S + tolerance : seconds(opts.maxLifetime);
    if (maxLifetime === undefined) throw new TypeError('verify: `maxLifetime` is seconds or a duration such as "15m"');
    this.audience = opts.audience;
    this.issuer = opts.issuer ?? 'jobscope';
    this.tolerance = tolerance;
    this.maxLifetime = maxLifetime;
    this.requiredScopes = scopesOf(opts.scope);
    this.keys = keySource(opts);
    this.live = liveness(opts);
  }

  get redis(): Redis | undefined {
    return this.live.redis;
  }

  get jwksFetches(): number {
    return this.keys.fetches;
  }

  /** Step 2: the header, then the key it names. */
  private async keyFor(header: unknown) {
    if (!header || typeof header !== 'object' || Array.isArray(header))
      throw new TokenRejectedError('malformed', 'header is not a JSON object');
    const { alg, typ, crit, kid } = header as Record<string, unknown>;
    if (alg !== this.keys.algorithm) {
      const shown = typeof alg === 'string' ? alg.slice(0, 20) : typeof alg;
      throw new TokenRejectedError('bad_algorithm', `algorithm ${JSON.stringify(shown)} is not accepted (expected ${this.keys.algorithm})`);
    }
    const type = typeof typ === 'string' ? typ.toLowerCase() : '';
    if (type !== 'at+jwt' && type !== 'application/at+jwt') throw new TokenRejectedError('bad_type', 'token type is not at+jwt');
    // RFC 7515 4.1.11: an extension this verifier does not understand must not be ignored.
    if (crit !== undefined) throw new TokenRejectedError('malformed', 'unsupported critical header parameters');
    if (!this.keys.needsKid) return this.keys.key(undefined);
    if (typeof kid !== 'string' || !kid || kid.length > 256) throw new TokenRejectedError('unknown_key', 'token has no usable kid');
    return this.keys.key(kid);
  }

  /** Steps 1 to 4: everything but liveness and scopes. */
  private async authentic(token: string): Promise<JobTokenClaims> {
    checkShape(token);
    let keyGiven = false;
    let refusal: unknown;
    const error = await new Promise<unknown>((resolve) => {
      jwt.verify(
        token,
        (header, callback) => {
          this.keyFor(header).then(
            (key) => {
              keyGiven = true;
              callback(null, key);
            },
            (err: unknown) => {
              refusal = err;
              callback(err as Error);
            },
          );
        },
        { algorithms: [this.keys.algorithm], audience: this.audience, issuer: this.issuer, clockTolerance: this.tolerance },
        (err) => resolve(err ?? undefined),
      );
    });
    if (refusal !== undefined) throw refusal;
    // jsonwebtoken could not decode it (no JSON header, an unparsable payload): it never asked for a key.
    if (!keyGiven) throw new TokenRejectedError('malformed', 'not a decodable JWS');
    if (error !== undefined && !isClaimError(error)) throw new TokenRejectedError('bad_signature', 'signature does not verify');
    // The signature holds: the payload is the runner's. Its claims must be present and typed before any verdict on them.
    const claims = typedClaims(jwt.decode(token));
    if (error instanceof jwt.TokenExpiredError) throw new TokenRejectedError('expired', 'token expired');
    if (error instanceof jwt.NotBeforeError) throw new TokenRejectedError('not_yet_valid', 'token not valid yet (nbf)');
    checkIssuedAt(claims, Math.floor(Date.now() / 1000), this.tolerance);
    checkLifetime(claims, this.maxLifetime);
    if (error !== undefined) {
      if ((error as Error).message.startsWith('jwt issuer invalid')) throw new TokenRejectedError('bad_issuer', 'issuer is not accepted');
      throw new TokenRejectedError('bad_audience', `token is not for audience "${this.audience}"`);
    }
    return claims;
  }

  async verify(token: string, opts?: ScopeOptions): Promise<JobTokenClaims> {
    const claims = await this.authentic(token);
    if (!(await this.live.isLive(token, claims))) {
      throw new TokenRejectedError('revoked', 'token is no longer live (its run ended or it was revoked)');
    }
    // After liveness: a finished run's token is "revoked" (401) whatever route it is presented to.
    const required = [...this.requiredScopes, ...scopesOf(opts?.scope)];
    const missing = missingScopes(claims, required);
    if (missing.length > 0) {
      throw new TokenRejectedError('insufficient_scope', `token lacks scope: ${missing.join(' ')}`, required.join(' '));
    }
    return claims;
  }

  middleware(opts?: ScopeOptions): JobTokenMiddleware {
    return expressMiddleware(this, opts);
  }

  close(): Promise<void> {
    return this.live.close();
  }
}

/**
 * Builds a verifier once, at start-up, and keeps it: it holds the keys, the JWKS cache and (with a Redis URL) a connection.
 * Options are checked here (a TypeError names the one that is wrong).
 */
export function createJobTokenVerifier(options: VerifyOptions): JobTokenVerifier {
  return new Verifier(options);
}
