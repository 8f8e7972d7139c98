// The receiving side: verify a jobscope run token the way RFC 8725 asks (explicit algorithm allow-list, typed tokens,
// every claim checked) and then require its jti to be live in Redis. Rejects by default; every rejection has a stable code.
// Usable without the rest of jobscope: `import { requireJobToken, verifyJobToken } from 'jobscope/verify'`.
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { Redis } from 'ioredis';
import jwt from 'jsonwebtoken';
import type { TokenClaims } from '../interfaces.ts';

export type RejectCode =
  | 'missing'
  | 'malformed'
  | 'conflicting_tokens'
  | 'token_in_query'
  | 'bad_algorithm'
  | 'bad_type'
  | 'unknown_key'
  | 'bad_signature'
  | 'expired'
  | 'not_yet_valid'
  | 'bad_issuer'
  | 'bad_audience'
  | 'missing_claim'
  | 'revoked'
  | 'insufficient_scope'
  | 'unavailable';

const STATUS: Record<RejectCode, number> = {
  missing: 401,
  malformed: 401,
  conflicting_tokens: 401,
  token_in_query: 401,
  bad_algorithm: 401,
  bad_type: 401,
  unknown_key: 401,
  bad_signature: 401,
  expired: 401,
  not_yet_valid: 401,
  bad_issuer: 401,
  bad_audience: 401,
  missing_claim: 401,
  revoked: 401,
  insufficient_scope: 403,
  unavailable: 503,
};

export class TokenRejectedError extends Error {
  readonly code: RejectCode;
  readonly status: number;
  constructor(code: RejectCode, message: string) {
    super(message);
    this.name = 'TokenRejectedError';
    this.code = code;
    this.status = STATUS[code];
  }
}

export interface VerifyOptions {
  /** This service's name: the token's `aud` must contain it. */
  audience: string;
  /** Expected `iss` (default `jobscope`). */
  issuer?: string;
  /** One of: the runner's JWKS URL, a JWKS document, a public key (PEM or KeyObject, ES256), or the shared secret (HS256). */
  jwksUrl?: string;
  jwks?: { keys: unknown[] };
  publicKey?: string | Buffer | KeyObject;
  secret?: string;
  /** Where liveness is checked: a Redis URL or an ioredis client. */
  redis: string | Redis;
  /** The runner's JOBSCOPE_PREFIX (default `jobscope`). */
  prefix?: string;
  /** Scopes this route requires (all of them). */
  scope?: string | string[];
  /** Seconds of clock skew tolerated on exp/nbf/iat (default 5). */
  clockTolerance?: number;
  /** Minimum milliseconds between two JWKS fetches triggered by an unknown kid (default 30 s). */
  jwksRefetchIntervalMs?: number;
  /** The JWKS is refreshed in the background after this long even without an unknown kid (default 10 min). */
  jwksMaxAgeMs?: number;
}

const MAX_TOKEN_LENGTH = 8192;
const REQUIRED_CLAIMS = ['iss', 'sub', 'aud', 'jti', 'iat', 'exp', 'run'] as const;

interface DecodedHeader {
  alg?: unknown;
  typ?: unknown;
  kid?: unknown;
}

function decodeHeader(token: string): DecodedHeader {
  if (typeof token !== 'string' || token.length === 0) throw new TokenRejectedError('missing', 'no token');
  if (token.length > MAX_TOKEN_LENGTH) throw new TokenRejectedError('malformed', 'token too long');
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => /^[A-Za-z0-9_-]*$/.test(p)) || !parts[0] || !parts[1]) {
    throw new TokenRejectedError('malformed', 'not a compact JWS (three base64url parts)');
  }
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')) as unknown;
    if (!header || typeof header !== 'object' || Array.isArray(header)) throw new Error('not an object');
    return header as DecodedHeader;
  } catch {
    throw new TokenRejectedError('malformed', 'header is not base64url JSON');
  }
}

/** The usable ES256 keys of a JWKS document, by kid. Malformed entries are skipped; the others stay usable. */
export function parseJwks(body: unknown): Map<string, KeyObject> {
  const keys = (body as { keys?: unknown })?.keys;
  if (!Array.isArray(keys)) throw new Error('no "keys" array');
  const out = new Map<string, KeyObject>();
  for (const jwk of keys as Record<string, unknown>[]) {
    if (jwk?.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.kid !== 'string') continue;
    if (jwk.use !== undefined && jwk.use !== 'sig') continue;
    try {
      out.set(jwk.kid, createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y } as never, format: 'jwk' }));
    } catch {
      // skipped
    }
  }
  return out;
}

/** Fetches and caches a JWKS; refetches on an unknown kid no more often than the rate limit allows. */
class JwksCache {
  private keys = new Map<string, KeyObject>();
  private fetchedAt = 0;
  private lastAttempt = -Infinity;
  private inflight: Promise<void> | null = null;
  fetchCount = 0;
  private readonly url: string;
  private readonly minIntervalMs: number;
  private readonly maxAgeMs: number;
  constructor(url: string, minIntervalMs: number, maxAgeMs: number) {
    this.url = url;
    this.minIntervalMs = minIntervalMs;
    this.maxAgeMs = maxAgeMs;
  }

  private refresh(): Promise<void> {
    this.inflight ??= (async () => {
      this.lastAttempt = Date.now();
      this.fetchCount++;
      try {
        const res = await fetch(this.url, { signal: AbortSignal.timeout(5000), redirect: 'error' });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        this.keys = parseJwks(await res.json());
        this.fetchedAt = Date.now();
      } finally {
        this.inflight = null;
      }
    })();
    return this.inflight;
  }

  async get(kid: string): Promise<KeyObject> {
    const stale = Date.now() - this.fetchedAt > this.maxAgeMs;
    const allowed = Date.now() - this.lastAttempt >= this.minIntervalMs;
    if ((this.fetchedAt === 0 || stale || !this.keys.has(kid)) && (allowed || this.inflight)) {
      try {
        await this.refresh();
      } catch (err) {
        if (!this.keys.has(kid)) {
          throw new TokenRejectedError('unavailable', `cannot fetch the JWKS: ${(err as Error).message}`);
        }
      }
    }
    const key = this.keys.get(kid);
    if (!key) throw new TokenRejectedError('unknown_key', 'the token was signed with a key this service does not know');
    return key;
  }
}

/** A verifier built once per configuration: holds the parsed keys, the JWKS cache and the Redis client. */
export class JobTokenVerifier {
  readonly options: Required<Pick<VerifyOptions, 'audience' | 'issuer' | 'prefix' | 'clockTolerance'>>;
  readonly requiredScopes: string[];
  readonly redis: Redis;
  readonly jwks: JwksCache | undefined;
  private readonly staticKey: KeyObject | undefined;
  private readonly staticKeys: Map<string, KeyObject> | undefined;
  private readonly algorithm: 'ES256' | 'HS256';

  constructor(opts: VerifyOptions) {
    if (!opts || typeof opts.audience !== 'string' || !opts.audience) throw new TypeError('verify: `audience` is required');
    const sources = [opts.jwksUrl, opts.jwks, opts.publicKey, opts.secret].filter((s) => s !== undefined);
    if (sources.length !== 1) throw new TypeError('verify: give exactly one of `jwksUrl`, `jwks`, `publicKey` or `secret`');
    if (!opts.redis) throw new TypeError('verify: `redis` (a URL or an ioredis client) is required for the liveness check');
    this.options = {
      audience: opts.audience,
      issuer: opts.issuer ?? 'jobscope',
      prefix: opts.prefix ?? 'jobscope',
      clockTolerance: opts.clockTolerance ?? 5,
    };
    this.requiredScopes = typeof opts.scope === 'string' ? opts.scope.split(' ').filter(Boolean) : (opts.scope ?? []);
    if (opts.secret !== undefined) {
      this.algorithm = 'HS256';
      this.staticKey = createSecretKey(Buffer.from(opts.secret, 'utf8'));
    } else {
      this.algorithm = 'ES256';
      if (opts.publicKey !== undefined) {
        const key = typeof opts.publicKey === 'object' && 'type' in opts.publicKey ? opts.publicKey : createPublicKey(opts.publicKey);
        if (key.type !== 'public') throw new TypeError('verify: `publicKey` must be a public key');
        this.staticKey = key;
      } else if (opts.jwks !== undefined) {
        this.staticKeys = parseJwks(opts.jwks);
      } else {
        this.jwks = new JwksCache(opts.jwksUrl!, opts.jwksRefetchIntervalMs ?? 30_000, opts.jwksMaxAgeMs ?? 600_000);
      }
    }
    this.redis =
      typeof opts.redis === 'string'
        ? // Fail closed and fast when Redis is down: no offline queue, one retry.
          new Redis(opts.redis, { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000, lazyConnect: false })
        : opts.redis;
    if (typeof opts.redis === 'string') this.redis.on('error', () => {});
  }

  /** Verifies signature and claims, then liveness. Resolves to the claims; rejects with TokenRejectedError. */
  async verify(token: string, extraScopes: string[] = []): Promise<TokenClaims> {
    const header = decodeHeader(token);
    if (header.alg !== this.algorithm) {
      throw new TokenRejectedError('bad_algorithm', `algorithm ${String(header.alg)} is not accepted (expected ${this.algorithm})`);
    }
    const typ = typeof header.typ === 'string' ? header.typ.toLowerCase() : '';
    if (typ !== 'at+jwt' && typ !== 'application/at+jwt') {
      throw new TokenRejectedError('bad_type', `token type ${String(header.typ)} is not at+jwt`);
    }
    let key = this.staticKey;
    if (!key) {
      if (typeof header.kid !== 'string' || !header.kid) throw new TokenRejectedError('unknown_key', 'token has no kid');
      key = this.staticKeys ? this.staticKeys.get(header.kid) : await this.jwks!.get(header.kid);
      if (!key) throw new TokenRejectedError('unknown_key', 'the token was signed with a key this service does not know');
    }
    let claims: TokenClaims;
    try {
      claims = jwt.verify(token, key, {
        algorithms: [this.algorithm],
        clockTolerance: this.options.clockTolerance,
      }) as TokenClaims;
    } catch (err) {
      if (err instanceof jwt.TokenExpiredError) throw new TokenRejectedError('expired', 'token expired');
      if (err instanceof jwt.NotBeforeError) throw new TokenRejectedError('not_yet_valid', 'token not valid yet (nbf)');
      const msg = (err as Error).message;
      if (/signature/.test(msg)) throw new TokenRejectedError('bad_signature', 'signature does not verify');
      throw new TokenRejectedError('malformed', `token rejected: ${msg}`);
    }
    if (!claims || typeof claims !== 'object') throw new TokenRejectedError('malformed', 'payload is not a JSON object');
    for (const name of REQUIRED_CLAIMS) {
      if (claims[name] === undefined || claims[name] === null || claims[name] === '') {
        throw new TokenRejectedError('missing_claim', `claim "${name}" is missing`);
      }
    }
    if (typeof claims.exp !== 'number' || typeof claims.iat !== 'number') {
      throw new TokenRejectedError('malformed', 'exp and iat must be numbers');
    }
    if (claims.iat > Date.now() / 1000 + this.options.clockTolerance) {
      throw new TokenRejectedError('not_yet_valid', 'token issued in the future (iat)');
    }
    if (claims.iss !== this.options.issuer) throw new TokenRejectedError('bad_issuer', 'issuer is not accepted');
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!aud.includes(this.options.audience)) {
      throw new TokenRejectedError('bad_audience', `token is not for audience "${this.options.audience}"`);
    }
    if (typeof claims.jti !== 'string' || !/^[A-Za-z0-9-]{1,64}$/.test(claims.jti)) {
      throw new TokenRejectedError('malformed', 'jti is not a token id');
    }
    const granted = new Set(typeof claims.scope === 'string' ? claims.scope.split(' ') : []);
    const missing = [...this.requiredScopes, ...extraScopes].filter((s) => !granted.has(s));
    if (missing.length > 0) {
      throw new TokenRejectedError('insufficient_scope', `token lacks scope: ${missing.join(' ')}`);
    }
    let live: number;
    try {
      live = await this.redis.exists(`${this.options.prefix}:token:${claims.jti}`);
    } catch {
      throw new TokenRejectedError('unavailable', 'cannot check token liveness (Redis unreachable)');
    }
    if (live !== 1) throw new TokenRejectedError('revoked', 'token is no longer live (its run ended or it was revoked)');
    return claims;
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

const verifiers = new WeakMap<VerifyOptions, JobTokenVerifier>();

/** Framework-free verification. Build the options object once and reuse it: the verifier (keys, JWKS, Redis) is cached on it. */
export function verifyJobToken(token: string, opts: VerifyOptions): Promise<TokenClaims> {
  let verifier = verifiers.get(opts);
  if (!verifier) {
    verifier = new JobTokenVerifier(opts);
    verifiers.set(opts, verifier);
  }
  return verifier.verify(token);
}

/** Minimal request shape, so the extractor works with Express, node:http or anything else. */
export interface RequestLike {
  headers: Record<string, string | string[] | undefined>;
  url?: string;
}

/**
 * Finds the token in a request: `Authorization: Bearer` first, `X-Access-Token` for compatibility. Both present and
 * different is a rejection; a token in the query string is a rejection (it would be logged by every proxy on the way).
 */
export function extractToken(req: RequestLike): string {
  if (req.url && /[?&](access_token|token|x-access-token)=/i.test(req.url)) {
    throw new TokenRejectedError('token_in_query', 'tokens are never accepted in the query string: send Authorization: Bearer');
  }
  const auth = req.headers.authorization;
  const alt = req.headers['x-access-token'];
  if (Array.isArray(auth) || Array.isArray(alt)) throw new TokenRejectedError('malformed', 'more than one token header');
  let bearer: string | undefined;
  if (auth !== undefined) {
    const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(auth);
    if (!m) throw new TokenRejectedError('malformed', 'Authorization header is not "Bearer <token>"');
    bearer = m[1];
  }
  const other = alt?.trim() || undefined;
  if (bearer && other && bearer !== other) {
    throw new TokenRejectedError('conflicting_tokens', 'Authorization and X-Access-Token carry different tokens');
  }
  const token = bearer ?? other;
  if (!token) throw new TokenRejectedError('missing', 'no token: send Authorization: Bearer <token>');
  return token;
}

/** The JSON body and headers of a rejection, for any framework. */
export function rejection(err: unknown): { status: number; headers: Record<string, string>; body: { error: RejectCode; message: string } } {
  const e = err instanceof TokenRejectedError ? err : new TokenRejectedError('unavailable', 'verification failed');
  const params =
    e.code === 'insufficient_scope'
      ? `error="insufficient_scope", error_description="${e.code}"`
      : e.code === 'unavailable'
        ? `error="temporarily_unavailable"`
        : e.code === 'missing'
          ? ''
          : `error="invalid_token", error_description="${e.code}"`;
  return {
    status: e.status,
    headers: { 'WWW-Authenticate': `Bearer realm="jobscope"${params ? ', ' + params : ''}`, 'Cache-Control': 'no-store' },
    body: { error: e.code, message: e.message },
  };
}

interface ExpressLikeRequest extends RequestLike {
  originalUrl?: string;
  jobToken?: TokenClaims;
}
interface ExpressLikeResponse {
  status(code: number): ExpressLikeResponse;
  set(headers: Record<string, string>): ExpressLikeResponse;
  json(body: unknown): unknown;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The verified claims of the job token, set by requireJobToken(). */
      jobToken?: TokenClaims;
    }
  }
}

/** Express middleware: 401/403/503 with a JSON reason on rejection; `req.jobToken` holds the claims on success. */
export function requireJobToken(opts: VerifyOptions) {
  const verifier = new JobTokenVerifier(opts);
  const middleware = (req: ExpressLikeRequest, res: ExpressLikeResponse, next: (err?: unknown) => void): void => {
    let token: string;
    try {
      token = extractToken({ headers: req.headers, url: req.originalUrl ?? req.url });
    } catch (err) {
      const r = rejection(err);
      res.status(r.status).set(r.headers).json(r.body);
      return;
    }
    verifier.verify(token).then(
      (claims) => {
        req.jobToken = claims;
        next();
      },
      (err: unknown) => {
        const r = rejection(err);
        res.status(r.status).set(r.headers).json(r.body);
      },
    );
  };
  return Object.assign(middleware, { verifier });
}
