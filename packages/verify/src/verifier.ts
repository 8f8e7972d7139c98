// The verifier: built once per service (like jose's createRemoteJWKSet), it holds the keys, the JWKS cache and the liveness
// connection, none of which it shows: its surface is verify, middleware and close. Each token goes through these steps and
// is refused at the first that fails, with a stable reason code:
//   1. shape: a string of at most 8 KB, three canonical base64url parts (an empty signature is let through so that
//      `alg: none` is reported as such; it can never verify)
//   2. header (decoded by jsonwebtoken): `alg` exactly the configured one (ES256, or HS256 with a secret), `typ` at+jwt,
//      no `crit`; the key by `kid` (`jku`, `jwk`, `x5u`, `x5c` are never read)
//   3. jsonwebtoken: the signature with the algorithm allow-list, and nothing else (no claim), so any error it reports
//      means "does not verify"
//   4. claims.ts, on the verified payload: claims present and typed, nbf, exp, iat, lifetime (exp - iat) capped, aud, iss
//   5. liveness: the jti is live in the runner's Redis, or the runner's introspection endpoint says active
//   6. the route's scopes (403)
import jwt from 'jsonwebtoken';
import { checkClaims, missingScopes, scopesOf, seconds, type ClaimRules, type JobTokenClaims } from './claims.ts';
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

class Verifier implements JobTokenVerifier {
  // ES private fields: the keys (with the JWKS cache) and the liveness connection are not reachable from the object.
  readonly #rules: ClaimRules;
  readonly #requiredScopes: string[];
  readonly #keys: KeySource;
  readonly #live: Liveness;

  constructor(opts: VerifyOptions) {
    if (!opts || typeof opts.audience !== 'string' || !opts.audience) throw new TypeError('verify: `audience` is required');
    const tolerance = opts.clockTolerance ?? 5;
    if (!Number.isFinite(tolerance) || tolerance < 0 || tolerance > 60) throw new TypeError('verify: `clockTolerance` is 0..60 seconds');
    const maxLifetime = opts.maxLifetime === undefined ? RUNNER_MAX_LIFETIME_S + RUNNER_GRACE_S + tolerance : seconds(opts.maxLifetime);
    if (maxLifetime === undefined) throw new TypeError('verify: `maxLifetime` is seconds or a duration such as "15m"');
    this.#rules = { audience: opts.audience, issuer: opts.issuer ?? 'jobscope', toleranceSec: tolerance, maxLifetimeSec: maxLifetime };
    this.#requiredScopes = scopesOf(opts.scope);
    this.#keys = keySource(opts);
    this.#live = liveness(opts);
  }

  /** Step 2: the header, then the key it names. */
  async #keyFor(header: unknown) {
    if (!header || typeof header !== 'object' || Array.isArray(header))
      throw new TokenRejectedError('malformed', 'header is not a JSON object');
    const { alg, typ, crit, kid } = header as Record<string, unknown>;
    const keys = this.#keys;
    if (alg !== keys.algorithm) {
      const shown = typeof alg === 'string' ? alg.slice(0, 20) : typeof alg;
      throw new TokenRejectedError('bad_algorithm', `algorithm ${JSON.stringify(shown)} is not accepted (expected ${keys.algorithm})`);
    }
    const type = typeof typ === 'string' ? typ.toLowerCase() : '';
    if (type !== 'at+jwt' && type !== 'application/at+jwt') throw new TokenRejectedError('bad_type', 'token type is not at+jwt');
    // RFC 7515 4.1.11: an extension this verifier does not understand must not be ignored.
    if (crit !== undefined) throw new TokenRejectedError('malformed', 'unsupported critical header parameters');
    if (!keys.needsKid) return keys.key(undefined);
    if (typeof kid !== 'string' || !kid || kid.length > 256) throw new TokenRejectedError('unknown_key', 'token has no usable kid');
    return keys.key(kid);
  }

  /** Steps 2 and 3: the payload of a token whose signature verifies (its claims not judged yet). */
  #signedPayload(token: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let keyGiven = false;
      let refusal: unknown;
      jwt.verify(
        token,
        (header, callback) => {
          this.#keyFor(header).then(
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
        // Signature and algorithm only: every claim, exp and nbf included, is claims.ts's to judge (jsonwebtoken reports a
        // non-numeric exp or nbf as a JsonWebTokenError, the class of "invalid signature", told apart only by its message).
        { algorithms: [this.#keys.algorithm], ignoreExpiration: true, ignoreNotBefore: true },
        (err, payload) => {
          if (refusal !== undefined) reject(refusal);
          // jsonwebtoken could not decode it (no JSON header): it never asked for a key.
          else if (!keyGiven) reject(new TokenRejectedError('malformed', 'not a decodable JWS'));
          else if (err) reject(new TokenRejectedError('bad_signature', 'signature does not verify'));
          else resolve(payload);
        },
      );
    });
  }

  async verify(token: string, opts?: ScopeOptions): Promise<JobTokenClaims> {
    checkShape(token);
    // The signature holds: the payload is the runner's; its claims are judged next (step 4).
    const claims = checkClaims(await this.#signedPayload(token), this.#rules, Math.floor(Date.now() / 1000));
    if (!(await this.#live.isLive(token, claims))) {
      throw new TokenRejectedError('revoked', 'token is no longer live (its run ended or it was revoked)');
    }
    // After liveness: a finished run's token is "revoked" (401) whatever route it is presented to.
    const required = [...this.#requiredScopes, ...scopesOf(opts?.scope)];
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
    return this.#live.close();
  }
}

/**
 * Builds a verifier once, at start-up, and keeps it: it holds the keys, the JWKS cache and (with a Redis URL) a connection.
 * Options are checked here (a TypeError names the one that is wrong).
 */
export function createJobTokenVerifier(options: VerifyOptions): JobTokenVerifier {
  return new Verifier(options);
}
