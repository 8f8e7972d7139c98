// The receiving side: verify a jobscope run token the way RFC 8725 asks (explicit algorithm allow-list, explicitly typed
// tokens, every claim checked, strict decoding) and then require its jti to be live in Redis. Rejects by default; every
// rejection carries a stable code. Usable without the rest of jobscope:
//   import { requireJobToken, verifyJobToken, extractToken, rejection } from 'jobscope/verify'
// This module imports only node built-ins and ioredis, so a service can depend on it alone. It never logs anything, and no
// error message it produces contains the token or any part of it.
import {
  createHash,
  createHmac,
  createPublicKey,
  createSecretKey,
  timingSafeEqual,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { Redis } from 'ioredis';

/** The claims of a verified jobscope run token (RFC 9068 shape plus jobscope's `run` and `att`). */
export interface JobTokenClaims {
  iss: string;
  /** `job:<name>` */
  sub: string;
  /** Always a list here (a single-string `aud` is normalised). */
  aud: string[];
  /** Space-separated scopes ('' when the token has none). */
  scope: string;
  jti: string;
  iat: number;
  /** `iat` when the token has no nbf. */
  nbf: number;
  exp: number;
  /** The run id (`<job>:<id>`). */
  run: string;
  /** Attempt number. */
  att: number;
}

/** Every reason a token or request is refused. Stable: services and tests may branch on them. */
export const REJECT_CODES = [
  'missing',
  'malformed',
  'conflicting_tokens',
  'token_in_query',
  'bad_algorithm',
  'bad_type',
  'unknown_key',
  'bad_signature',
  'expired',
  'not_yet_valid',
  'bad_issuer',
  'bad_audience',
  'missing_claim',
  'revoked',
  'insufficient_scope',
  'unavailable',
] as const;
export type RejectCode = (typeof REJECT_CODES)[number];

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
  /** 401, 403 (insufficient_scope) or 503 (unavailable: the verifier cannot decide, so it refuses). */
  readonly status: number;
  /** For insufficient_scope: the scopes the route requires. */
  readonly requiredScope: string | undefined;
  constructor(code: RejectCode, message: string, requiredScope?: string) {
    super(message);
    this.name = 'TokenRejectedError';
    this.code = code;
    this.status = STATUS[code];
    this.requiredScope = requiredScope;
  }
}

export interface VerifyOptions {
  /** This service's name: the token's `aud` must contain it. */
  audience: string;
  /** Expected `iss` (default `jobscope`; the runner's JOBSCOPE_ISSUER). */
  issuer?: string;
  /** Exactly one of: the runner's JWKS URL, a JWKS document, a public key (PEM or KeyObject, ES256), or the secret (HS256). */
  jwksUrl?: string;
  jwks?: { keys: unknown[] };
  publicKey?: string | Buffer | KeyObject;
  secret?: string;
  /** Where liveness is checked: a Redis URL or an ioredis client. */
  redis: string | Redis;
  /** The runner's JOBSCOPE_PREFIX (default `jobscope`). */
  prefix?: string;
  /** Scopes this route requires (all of them): a space-separated string or a list. Missing ones -> 403. */
  scope?: string | string[];
  /** Seconds of clock skew tolerated on exp/nbf/iat (default 5, at most 60). */
  clockTolerance?: number;
  /** Minimum milliseconds between two JWKS fetches (default 10 s): a flood of unknown kids cannot hammer the runner. */
  jwksRefetchIntervalMs?: number;
  /** A known key's JWKS is refreshed in the background once it is this old (default 10 min). */
  jwksMaxAgeMs?: number;
  /** Milliseconds the liveness check may take before the verifier gives up with 503 (default 2000). */
  livenessTimeoutMs?: number;
}

const MAX_TOKEN_LENGTH = 8192;
const MAX_JWKS_BYTES = 1 << 20;
const JTI = /^[A-Za-z0-9-]{1,64}$/;
const B64URL = /^[A-Za-z0-9_-]+$/;

/** Strict base64url: the alphabet, no padding, and the canonical encoding (no spare bits set). */
function b64url(part: string): Buffer | null {
  if (!B64URL.test(part)) return null;
  const buf = Buffer.from(part, 'base64url');
  return buf.toString('base64url') === part ? buf : null;
}

function jsonObject(buf: Buffer): Record<string, unknown> | null {
  try {
    const value = JSON.parse(buf.toString('utf8')) as unknown;
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

interface Parsed {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  signingInput: Buffer;
  signature: Buffer;
}

/** Splits and strictly decodes a compact JWS. Nothing here is trusted yet. */
function parseCompact(token: unknown): Parsed {
  if (typeof token !== 'string' || token.length === 0) throw new TokenRejectedError('missing', 'no token');
  if (token.length > MAX_TOKEN_LENGTH) throw new TokenRejectedError('malformed', 'token too long');
  const parts = token.split('.');
  if (parts.length !== 3) throw new TokenRejectedError('malformed', 'not a compact JWS (three base64url parts)');
  const [h, p] = parts.slice(0, 2).map(b64url);
  // An empty signature is let through here so that `alg: none` is reported as such; it can never verify.
  const s = parts[2] === '' ? Buffer.alloc(0) : b64url(parts[2]);
  if (!h || !p || !s) throw new TokenRejectedError('malformed', 'not a compact JWS (three canonical base64url parts)');
  const header = jsonObject(h);
  if (!header) throw new TokenRejectedError('malformed', 'header is not a JSON object');
  const payload = jsonObject(p);
  if (!payload) throw new TokenRejectedError('malformed', 'payload is not a JSON object');
  return { header, payload, signingInput: Buffer.from(`${parts[0]}.${parts[1]}`), signature: s };
}

/** The usable ES256 keys of a JWKS document, by kid. Malformed or foreign entries are skipped; the others stay usable. */
export function parseJwks(body: unknown): Map<string, KeyObject> {
  const keys = (body as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new Error('no "keys" array');
  const out = new Map<string, KeyObject>();
  for (const jwk of keys as Record<string, unknown>[]) {
    if (!jwk || jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.kid !== 'string' || !jwk.kid) continue;
    if (jwk.use !== undefined && jwk.use !== 'sig') continue;
    if (jwk.alg !== undefined && jwk.alg !== 'ES256') continue;
    if (typeof jwk.x !== 'string' || typeof jwk.y !== 'string') continue;
    try {
      // Only the public coordinates are read: a published private part ("d") is never used.
      out.set(jwk.kid, createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }, format: 'jwk' }));
    } catch {
      // not a point on the curve: skipped
    }
  }
  return out;
}

/** Fetches and caches a JWKS; on an unknown kid refetches, but never more often than the rate limit allows. */
export class JwksCache {
  private keys = new Map<string, KeyObject>();
  private fetchedAt = 0;
  private lastAttempt = -Infinity;
  private inflight: Promise<void> | null = null;
  /** How many fetches were started (for tests and metrics). */
  fetchCount = 0;
  readonly url: string;
  private readonly minIntervalMs: number;
  private readonly maxAgeMs: number;
  constructor(url: string, minIntervalMs: number, maxAgeMs: number) {
    const parsed = new URL(url);
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new TypeError('verify: `jwksUrl` must be http(s)');
    this.url = url;
    this.minIntervalMs = minIntervalMs;
    this.maxAgeMs = maxAgeMs;
  }

  private refresh(): Promise<void> {
    this.inflight ??= (async () => {
      this.lastAttempt = Date.now();
      this.fetchCount++;
      try {
        const res = await fetch(this.url, {
          signal: AbortSignal.timeout(5000),
          redirect: 'error',
          headers: { accept: 'application/json' },
        });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const text = await res.text();
        if (text.length > MAX_JWKS_BYTES) throw new Error('JWKS document too large');
        this.keys = parseJwks(JSON.parse(text));
        this.fetchedAt = Date.now();
      } finally {
        this.inflight = null;
      }
    })();
    return this.inflight;
  }

  private get allowed(): boolean {
    return Date.now() - this.lastAttempt >= this.minIntervalMs;
  }

  async get(kid: string): Promise<KeyObject> {
    const known = this.keys.get(kid);
    if (known) {
      // Known key: answer now; refresh an old document in the background (a removed key then stops verifying).
      if (Date.now() - this.fetchedAt > this.maxAgeMs && this.allowed && !this.inflight) this.refresh().catch(() => undefined);
      return known;
    }
    if (this.inflight || this.allowed) await this.refresh().catch(() => undefined);
    const key = this.keys.get(kid);
    if (key) return key;
    // Never fetched successfully: the verifier cannot tell a good key from a bad one, so it is unavailable, not a rejection.
    if (this.fetchedAt === 0) throw new TokenRejectedError('unavailable', 'cannot fetch the JWKS of the runner');
    throw new TokenRejectedError('unknown_key', 'the token was signed with a key this service does not know');
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function scopesOf(scope: string | string[] | undefined): string[] {
  if (scope === undefined) return [];
  const list = typeof scope === 'string' ? scope.split(' ') : scope;
  return list.filter((s) => typeof s === 'string' && s.length > 0);
}

/**
 * A verifier built once per configuration: holds the keys, the JWKS cache and the Redis client. `verify()` checks, in
 * this order: the token's shape, `alg` against the allow-list (exactly one algorithm: ES256, or HS256 with a secret),
 * `typ` at+jwt, no unknown `crit`, the key (kid), the signature, the required claims and their types, exp/nbf/iat with the
 * clock tolerance, iss, aud, then liveness of the jti in Redis, then the route's scopes. Header parameters that point at
 * keys (`jku`, `jwk`, `x5u`, `x5c`) are never followed.
 */
export class JobTokenVerifier {
  readonly options: { audience: string; issuer: string; prefix: string; clockTolerance: number; livenessTimeoutMs: number };
  readonly requiredScopes: string[];
  readonly redis: Redis;
  readonly jwks: JwksCache | undefined;
  readonly algorithm: 'ES256' | 'HS256';
  private readonly staticKey: KeyObject | undefined;
  private readonly staticKeys: Map<string, KeyObject> | undefined;
  private readonly ownsRedis: boolean;
  /** Resolves when the connection this verifier opened is first ready: requests that arrive before it wait for it. */
  private readonly firstReady: Promise<void> = Promise.resolve();

  constructor(opts: VerifyOptions) {
    if (!opts || typeof opts.audience !== 'string' || !opts.audience) throw new TypeError('verify: `audience` is required');
    const sources = [opts.jwksUrl, opts.jwks, opts.publicKey, opts.secret].filter((s) => s !== undefined);
    if (sources.length !== 1) throw new TypeError('verify: give exactly one of `jwksUrl`, `jwks`, `publicKey` or `secret`');
    if (!opts.redis) throw new TypeError('verify: `redis` (a URL or an ioredis client) is required for the liveness check');
    const tolerance = opts.clockTolerance ?? 5;
    if (!Number.isFinite(tolerance) || tolerance < 0 || tolerance > 60) throw new TypeError('verify: `clockTolerance` is 0..60 seconds');
    this.options = {
      audience: opts.audience,
      issuer: opts.issuer ?? 'jobscope',
      prefix: opts.prefix ?? 'jobscope',
      clockTolerance: tolerance,
      livenessTimeoutMs: opts.livenessTimeoutMs ?? 2000,
    };
    this.requiredScopes = scopesOf(opts.scope);
    if (opts.secret !== undefined) {
      if (typeof opts.secret !== 'string' || Buffer.byteLength(opts.secret) < 32) {
        throw new TypeError('verify: `secret` must be at least 32 bytes (the runner refuses shorter ones too)');
      }
      this.algorithm = 'HS256';
      this.staticKey = createSecretKey(Buffer.from(opts.secret, 'utf8'));
    } else {
      this.algorithm = 'ES256';
      if (opts.publicKey !== undefined) {
        const given = opts.publicKey;
        const key = typeof given === 'object' && !Buffer.isBuffer(given) ? given : createPublicKey(given);
        if (key.type !== 'public') throw new TypeError('verify: `publicKey` must be a public key');
        if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
          throw new TypeError('verify: `publicKey` must be an EC P-256 key (ES256)');
        }
        this.staticKey = key;
      } else if (opts.jwks !== undefined) {
        this.staticKeys = parseJwks(opts.jwks);
      } else {
        this.jwks = new JwksCache(opts.jwksUrl!, opts.jwksRefetchIntervalMs ?? 10_000, opts.jwksMaxAgeMs ?? 600_000);
      }
    }
    this.ownsRedis = typeof opts.redis === 'string';
    if (typeof opts.redis === 'string') {
      // Fail closed and fast when Redis is down: no offline queue (a command fails at once instead of waiting).
      this.redis = new Redis(opts.redis, { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000 });
      this.redis.on('error', () => {});
      const redis = this.redis;
      this.firstReady = new Promise<void>((resolve) => redis.once('ready', () => resolve()));
    } else {
      this.redis = opts.redis;
    }
  }

  private async key(header: Record<string, unknown>): Promise<KeyObject> {
    if (this.staticKey) return this.staticKey;
    const kid = header.kid;
    if (typeof kid !== 'string' || !kid || kid.length > 256) throw new TokenRejectedError('unknown_key', 'token has no usable kid');
    const key = this.staticKeys ? this.staticKeys.get(kid) : await this.jwks!.get(kid);
    if (!key) throw new TokenRejectedError('unknown_key', 'the token was signed with a key this service does not know');
    return key;
  }

  private signatureValid(key: KeyObject, input: Buffer, signature: Buffer): boolean {
    if (signature.length !== (this.algorithm === 'ES256' ? 64 : 32)) return false;
    if (this.algorithm === 'HS256') return timingSafeEqual(createHmac('sha256', key).update(input).digest(), signature);
    try {
      return cryptoVerify('sha256', input, { key, dsaEncoding: 'ieee-p1363' }, signature);
    } catch {
      return false;
    }
  }

  /** Signature and claims only (no liveness, no scopes). Resolves to the claims; rejects with TokenRejectedError. */
  async verifySignatureAndClaims(token: string): Promise<JobTokenClaims> {
    const { header, payload, signingInput, signature } = parseCompact(token);
    if (header.alg !== this.algorithm) {
      const alg = typeof header.alg === 'string' ? header.alg.slice(0, 20) : typeof header.alg;
      throw new TokenRejectedError('bad_algorithm', `algorithm ${JSON.stringify(alg)} is not accepted (expected ${this.algorithm})`);
    }
    const typ = typeof header.typ === 'string' ? header.typ.toLowerCase() : '';
    if (typ !== 'at+jwt' && typ !== 'application/at+jwt') throw new TokenRejectedError('bad_type', 'token type is not at+jwt');
    // RFC 7515 4.1.11: an extension this verifier does not understand must not be ignored.
    if (header.crit !== undefined) throw new TokenRejectedError('malformed', 'unsupported critical header parameters');
    const key = await this.key(header);
    if (!this.signatureValid(key, signingInput, signature)) throw new TokenRejectedError('bad_signature', 'signature does not verify');
    return this.checkClaims(payload);
  }

  /** Claim checks on an already authenticated payload. Pure apart from the clock. */
  checkClaims(payload: Record<string, unknown>, nowSec = Date.now() / 1000): JobTokenClaims {
    for (const name of ['iss', 'sub', 'aud', 'jti', 'iat', 'exp', 'run'] as const) {
      const v = payload[name];
      if (v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0)) {
        throw new TokenRejectedError('missing_claim', `claim "${name}" is missing`);
      }
    }
    const { exp, nbf, iat, iss, aud, sub, jti, scope, run } = payload;
    const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
    if (!num(exp) || !num(iat) || (nbf !== undefined && !num(nbf)))
      throw new TokenRejectedError('malformed', 'exp, iat and nbf must be numbers');
    if (typeof iss !== 'string' || typeof sub !== 'string' || typeof run !== 'string') {
      throw new TokenRejectedError('malformed', 'iss, sub and run must be strings');
    }
    if (typeof aud !== 'string' && !(Array.isArray(aud) && aud.every((a) => typeof a === 'string'))) {
      throw new TokenRejectedError('malformed', 'aud must be a string or a list of strings');
    }
    if (scope !== undefined && typeof scope !== 'string') throw new TokenRejectedError('malformed', 'scope must be a string');
    if (typeof jti !== 'string' || !JTI.test(jti)) throw new TokenRejectedError('malformed', 'jti is not a token id');
    const tol = this.options.clockTolerance;
    if (nowSec >= (exp as number) + tol) throw new TokenRejectedError('expired', 'token expired');
    if (nbf !== undefined && (nbf as number) > nowSec + tol) throw new TokenRejectedError('not_yet_valid', 'token not valid yet (nbf)');
    if ((iat as number) > nowSec + tol) throw new TokenRejectedError('not_yet_valid', 'token issued in the future (iat)');
    if (iss !== this.options.issuer) throw new TokenRejectedError('bad_issuer', 'issuer is not accepted');
    if (!(Array.isArray(aud) ? aud : [aud]).includes(this.options.audience)) {
      throw new TokenRejectedError('bad_audience', `token is not for audience "${this.options.audience}"`);
    }
    return {
      ...(payload as unknown as JobTokenClaims),
      aud: Array.isArray(aud) ? aud : [aud],
      nbf: (nbf as number | undefined) ?? (iat as number),
      scope: (scope as string | undefined) ?? '',
    };
  }

  /** Is `<prefix>:token:<jti>` in Redis? Throws 'unavailable' when Redis cannot answer in time: never a guess. */
  async isLive(jti: string): Promise<boolean> {
    const timeout = this.options.livenessTimeoutMs;
    try {
      if (this.ownsRedis && this.redis.status !== 'ready') {
        // Still connecting for the first time: wait a little (one shared promise). After an outage, firstReady has long
        // resolved and the command below fails at once (no offline queue): 503 without waiting.
        await withTimeout(this.firstReady, timeout);
      }
      return (await withTimeout(this.redis.exists(`${this.options.prefix}:token:${jti}`), timeout)) === 1;
    } catch {
      throw new TokenRejectedError('unavailable', 'cannot check token liveness (Redis unreachable)');
    }
  }

  /** Verifies signature and claims, then liveness, then scopes. Resolves to the claims; rejects with TokenRejectedError. */
  async verify(token: string, extraScopes: string[] = []): Promise<JobTokenClaims> {
    const claims = await this.verifySignatureAndClaims(token);
    if (!(await this.isLive(claims.jti))) {
      throw new TokenRejectedError('revoked', 'token is no longer live (its run ended or it was revoked)');
    }
    // After liveness: a finished run's token is "revoked" (401) whatever route it is presented to.
    const required = [...this.requiredScopes, ...extraScopes];
    const granted = new Set(claims.scope.split(' '));
    const missing = required.filter((s) => !granted.has(s));
    if (missing.length > 0) {
      throw new TokenRejectedError('insufficient_scope', `token lacks scope: ${missing.join(' ')}`, required.join(' '));
    }
    return claims;
  }

  /** Closes the Redis connection if this verifier opened it (a client you passed in stays yours). */
  async close(): Promise<void> {
    if (this.ownsRedis) this.redis.disconnect();
  }
}

// One verifier per distinct configuration, so `verifyJobToken(token, { ...literal })` on every request does not open a
// Redis connection per call. Objects (clients, keys, JWKS documents) are told apart by identity, strings by value.
const identities = new WeakMap<object, number>();
let nextIdentity = 0;
function identity(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Buffer.isBuffer(value)) {
    return Buffer.isBuffer(value) ? createHash('sha256').update(value).digest('hex') : value;
  }
  let id = identities.get(value);
  if (id === undefined) identities.set(value, (id = ++nextIdentity));
  return `#${id}`;
}
const MAX_CACHED = 100;
const verifiers = new Map<string, JobTokenVerifier>();

function cacheKey(opts: VerifyOptions): string {
  const secret = opts.secret === undefined ? undefined : createHash('sha256').update(String(opts.secret)).digest('hex');
  return JSON.stringify([
    opts.audience,
    opts.issuer,
    opts.prefix,
    opts.clockTolerance,
    opts.jwksUrl,
    identity(opts.jwks),
    identity(opts.publicKey),
    secret,
    identity(opts.redis),
    opts.jwksRefetchIntervalMs,
    opts.jwksMaxAgeMs,
    opts.livenessTimeoutMs,
  ]);
}

/** The shared verifier for these options (scope excluded: it is checked per call). */
export function verifierFor(opts: VerifyOptions): JobTokenVerifier {
  const key = cacheKey(opts);
  let verifier = verifiers.get(key);
  if (!verifier) {
    verifier = new JobTokenVerifier({ ...opts, scope: undefined });
    if (verifiers.size >= MAX_CACHED) {
      const [oldestKey, oldest] = verifiers.entries().next().value as [string, JobTokenVerifier];
      verifiers.delete(oldestKey);
      // Let requests in flight on it finish first.
      setTimeout(() => void oldest.close(), 10_000).unref();
    }
    verifiers.set(key, verifier);
  }
  return verifier;
}

/** Closes every verifier that `verifyJobToken`/`requireJobToken` built (their Redis connections), e.g. on shutdown. */
export async function closeVerifiers(): Promise<void> {
  const all = [...verifiers.values()];
  verifiers.clear();
  await Promise.all(all.map((v) => v.close()));
}

/** Framework-free verification: resolves to the claims, rejects with TokenRejectedError (see `rejection()` for a response). */
export function verifyJobToken(token: string, opts: VerifyOptions): Promise<JobTokenClaims> {
  try {
    return verifierFor(opts).verify(token, scopesOf(opts.scope));
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Minimal request shape, so the extractor works with Express, node:http or anything else. */
export interface RequestLike {
  headers: Record<string, string | string[] | undefined>;
  /** node:http's raw header list: lets a repeated Authorization header be seen (node keeps only the first). */
  rawHeaders?: string[];
  url?: string;
}

const QUERY_TOKEN_NAMES = new Set(['access_token', 'token', 'x-access-token', 'jwt', 'id_token', 'authorization', 'bearer']);
const JWT_SHAPE = /eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*/;

function tokenInQuery(url: string | undefined): boolean {
  const q = url?.indexOf('?') ?? -1;
  if (!url || q < 0) return false;
  const query = url.slice(q + 1);
  if (JWT_SHAPE.test(query)) return true;
  try {
    for (const [name, value] of new URLSearchParams(query)) {
      if (QUERY_TOKEN_NAMES.has(name.toLowerCase()) || JWT_SHAPE.test(value)) return true;
    }
  } catch {
    return true;
  }
  return false;
}

/**
 * Finds the token in a request: `Authorization: Bearer` first, `X-Access-Token` for compatibility. Both present and
 * different is a rejection, and so is a repeated header; a token in the query string is a rejection even when a header
 * carries one too (the URL has already been written to some access log: refuse it so the caller notices).
 */
export function extractToken(req: RequestLike): string {
  if (tokenInQuery(req.url)) {
    throw new TokenRejectedError('token_in_query', 'tokens are never accepted in the query string: send Authorization: Bearer');
  }
  if (req.rawHeaders) {
    const count = (name: string) => req.rawHeaders!.filter((h, i) => i % 2 === 0 && h.toLowerCase() === name).length;
    if (count('authorization') > 1 || count('x-access-token') > 1) {
      throw new TokenRejectedError('conflicting_tokens', 'a token header appears more than once');
    }
  }
  const auth = req.headers.authorization;
  const alt = req.headers['x-access-token'];
  if (Array.isArray(auth) || Array.isArray(alt))
    throw new TokenRejectedError('conflicting_tokens', 'a token header appears more than once');
  let bearer: string | undefined;
  if (auth !== undefined && auth.trim() !== '') {
    const m = /^Bearer +([^\s]+) *$/i.exec(auth);
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

export interface Rejection {
  status: number;
  headers: Record<string, string>;
  body: { error: RejectCode; message: string };
}

/** The status, headers (WWW-Authenticate per RFC 6750) and JSON body of a rejection, for any framework. */
export function rejection(err: unknown): Rejection {
  // Anything that is not a deliberate rejection is a failure to verify: refuse (503), never let it through.
  const e = err instanceof TokenRejectedError ? err : new TokenRejectedError('unavailable', 'verification failed');
  let params: string;
  if (e.code === 'missing') params = '';
  else if (e.code === 'insufficient_scope')
    params = `error="insufficient_scope", error_description="${e.code}", scope="${e.requiredScope ?? ''}"`;
  else if (e.code === 'unavailable') params = `error="temporarily_unavailable", error_description="${e.code}"`;
  else if (e.code === 'conflicting_tokens' || e.code === 'token_in_query')
    params = `error="invalid_request", error_description="${e.code}"`;
  else params = `error="invalid_token", error_description="${e.code}"`;
  const headers: Record<string, string> = {
    'WWW-Authenticate': `Bearer realm="jobscope"${params ? ', ' + params : ''}`,
    'Cache-Control': 'no-store',
  };
  if (e.code === 'unavailable') headers['Retry-After'] = '1';
  return { status: e.status, headers, body: { error: e.code, message: e.message } };
}

interface ExpressLikeRequest extends RequestLike {
  originalUrl?: string;
  jobToken?: JobTokenClaims;
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
      jobToken?: JobTokenClaims;
    }
  }
}

export type JobTokenMiddleware = ((req: ExpressLikeRequest, res: ExpressLikeResponse, next: (err?: unknown) => void) => void) & {
  verifier: JobTokenVerifier;
};

/**
 * Express middleware: 401/403/503 with `{ error: <code>, message }` and WWW-Authenticate on rejection; on success
 * `req.jobToken` holds the claims. Middlewares built from equal options share one verifier (keys, JWKS cache, Redis).
 */
export function requireJobToken(opts: VerifyOptions): JobTokenMiddleware {
  const verifier = verifierFor(opts);
  const scopes = scopesOf(opts.scope);
  const refuse = (res: ExpressLikeResponse, err: unknown) => {
    const r = rejection(err);
    res.status(r.status).set(r.headers).json(r.body);
  };
  const middleware = (req: ExpressLikeRequest, res: ExpressLikeResponse, next: (err?: unknown) => void): void => {
    let token: string;
    try {
      token = extractToken({ headers: req.headers, rawHeaders: req.rawHeaders, url: req.originalUrl ?? req.url });
    } catch (err) {
      return refuse(res, err);
    }
    verifier.verify(token, scopes).then(
      (claims) => {
        req.jobToken = claims;
        next();
      },
      (err: unknown) => refuse(res, err),
    );
  };
  return Object.assign(middleware, { verifier });
}
