// Where the verification key comes from: the runner's JWKS (fetched and cached by jwks-rsa), a JWKS document, one ES256
// public key, or the HS256 secret. Every key is a KeyObject built once, so jsonwebtoken never re-parses key material.
//
// jwks-rsa caches keys by kid and refetches the document for a kid it does not hold. On top of it, two rules of our own
// decide when a fetch may start, so neither a flood of made-up kids nor a runner that is down gets hammered:
// - a kid the runner did not publish in the last document fetches at most once per `jwksRefetchIntervalMs`;
// - after a failed fetch the next one waits 1 s, then 2 s, 4 s, ... up to that interval: a failure is never remembered as an
//   answer, so a service started before the runner accepts the runner's first tokens about a second after it is up.
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import jwksRsa from 'jwks-rsa';
import { TokenRejectedError } from './errors.ts';

/** A JWKS document (RFC 7517): `{ keys: [...] }`. */
export interface JwksDocument {
  keys: unknown[];
}

export interface KeyOptions {
  /** The runner's `GET /.well-known/jwks.json`. */
  jwksUrl?: string;
  /** A JWKS document, or a function that returns the current one (the runner itself uses this). */
  jwks?: JwksDocument | (() => Promise<JwksDocument>);
  /** One ES256 public key (PEM, DER or KeyObject). */
  publicKey?: string | Buffer | KeyObject;
  /** The HS256 secret (the runner's JOBSCOPE_JWT_SECRET: compatibility mode only). */
  secret?: string;
  /** A kid the runner has not published fetches the JWKS at most once per this interval (default 10 s). */
  jwksRefetchIntervalMs?: number;
  /** A cached key is checked against a fresh JWKS once it is this old (default 10 min). */
  jwksMaxAgeMs?: number;
  /** How long one JWKS fetch may take (default 5 s). */
  jwksTimeoutMs?: number;
}

export type Algorithm = 'ES256' | 'HS256';

/** A source of verification keys. */
export interface KeySource {
  /** The one algorithm accepted with these keys. */
  readonly algorithm: Algorithm;
  /** Whether tokens must name their key (`kid`). */
  readonly needsKid: boolean;
  key(kid: string | undefined): Promise<KeyObject>;
}

const MAX_JWKS_BYTES = 1 << 20;
const FIRST_RETRY_MS = 1000;
/**
 * While the JWKS cannot be fetched, a key already known keeps verifying this long after the last fetch that listed it
 * (jwks-rsa's stale fallback): tokens minted by workers keep working while the runner's HTTP server is down.
 */
const STALE_KEY_MS = 24 * 3600_000;

function isP256(key: KeyObject): boolean {
  return key.type === 'public' && key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

class StaticKey implements KeySource {
  readonly needsKid = false;
  readonly algorithm: Algorithm;
  private readonly value: KeyObject;
  constructor(algorithm: Algorithm, value: KeyObject) {
    this.algorithm = algorithm;
    this.value = value;
  }
  async key(): Promise<KeyObject> {
    return this.value;
  }
}

/** Fetches the runner's JWKS over HTTP: bounded in size, no redirects (and in time, by the caller's signal). */
function httpDocument(url: string): (signal: AbortSignal) => Promise<JwksDocument> {
  return async (signal) => {
    const res = await fetch(url, { signal, redirect: 'error', headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error(`JWKS answered HTTP ${res.status}`);
    const text = await res.text();
    if (text.length > MAX_JWKS_BYTES) throw new Error('JWKS document too large');
    return JSON.parse(text) as JwksDocument;
  };
}

/** Why no fetch was started (a rule above said wait); jwks-rsa treats it as an unreachable endpoint. */
class FetchDeferred extends Error {}

class JwksKeys implements KeySource {
  readonly algorithm = 'ES256';
  readonly needsKid = true;
  private readonly client: jwksRsa.JwksClient;
  private readonly document: (signal: AbortSignal) => Promise<JwksDocument>;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private inflight: Promise<JwksDocument> | undefined;
  private lastAttempt = -Infinity;
  private failures = 0;
  private fetchedOnce = false;
  /** The kids of the last document fetched: only these may cause a fetch outside the interval (to refresh a cached key). */
  private published = new Set<string>();
  /** The KeyObject of each key jwks-rsa holds, built once (weak: it goes when jwks-rsa drops the key). */
  private readonly keyObjects = new WeakMap<object, KeyObject | null>();

  constructor(document: (signal: AbortSignal) => Promise<JwksDocument>, intervalMs: number, maxAgeMs: number, timeoutMs: number) {
    this.document = document;
    this.intervalMs = intervalMs;
    this.timeoutMs = timeoutMs;
    this.client = new jwksRsa.JwksClient({
      fetcher: () => this.fetchDocument(),
      cache: true,
      cacheMaxEntries: 32,
      cacheMaxAge: maxAgeMs,
      cacheMaxAgeFallback: STALE_KEY_MS,
      // Off: the rules above replace it. Its options (rateLimit, jwksRequestsPerMinute) cannot give what test/rotation and
      // test/verify check: a per-minute bucket lets a burst of made-up kids fetch jwksRequestsPerMinute times at once and
      // queues the rest for up to a minute, then refuses a real rotated kid until it refills; a failed fetch costs a token
      // like any other, so there is no 1 s, 2 s, 4 s backoff: either every request fetches or the runner's first tokens wait
      // up to a minute after it is up. (cache and cacheMaxAge are used as they are.)
      rateLimit: false,
    });
  }

  /** When the next fetch may start: after a failure 1 s, 2 s, 4 s... (at most the interval); after a success the interval. */
  private nextFetchAt(): number {
    const wait = this.failures === 0 ? this.intervalMs : Math.min(FIRST_RETRY_MS * 2 ** (this.failures - 1), this.intervalMs);
    return this.lastAttempt + wait;
  }

  /** jwks-rsa's fetcher: one fetch at a time (concurrent callers share it), none during the backoff after a failure. */
  private fetchDocument(): Promise<JwksDocument> {
    if (this.inflight) return this.inflight;
    if (this.failures > 0 && Date.now() < this.nextFetchAt()) return Promise.reject(new FetchDeferred('JWKS fetch backing off'));
    this.lastAttempt = Date.now();
    const p = (async () => {
      try {
        // Every source is bounded in time, a function given as `jwks` too (the runner's own reads Redis, which may be down).
        const signal = AbortSignal.timeout(this.timeoutMs);
        const timedOut = new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
        const doc = await Promise.race([this.document(signal), timedOut]);
        if (!doc || !Array.isArray(doc.keys)) throw new Error('no "keys" array');
        this.published = new Set(
          doc.keys.map((k) => (k as { kid?: unknown } | null)?.kid).filter((k): k is string => typeof k === 'string'),
        );
        this.failures = 0;
        this.fetchedOnce = true;
        return doc;
      } catch (err) {
        this.failures++;
        throw err;
      } finally {
        this.inflight = undefined;
      }
    })();
    this.inflight = p;
    return p;
  }

  async key(kid: string | undefined): Promise<KeyObject> {
    if (kid === undefined) throw new TokenRejectedError('unknown_key', 'token has no usable kid');
    if (!this.published.has(kid) && !this.inflight && Date.now() < this.nextFetchAt()) {
      // A kid the runner did not publish, and no fetch may start yet: answer from what is known.
      if (this.failures > 0 || !this.fetchedOnce) throw new TokenRejectedError('unavailable', 'cannot fetch the JWKS of the runner');
      throw new TokenRejectedError('unknown_key', 'the token was signed with a key this service does not know');
    }
    let signingKey: jwksRsa.SigningKey;
    try {
      signingKey = await this.client.getSigningKey(kid);
    } catch (err) {
      const e = err as Error & { isEndpointUnavailable?: boolean };
      if (e.name === 'SigningKeyNotFoundError' || (e.name === 'JwksError' && !e.isEndpointUnavailable)) {
        // The document was read and has no such key (or no usable key at all). A kid it lists but jwks-rsa cannot use falls
        // under the interval rule from now on, like any unknown kid.
        this.published.delete(kid);
        throw new TokenRejectedError('unknown_key', 'the token was signed with a key this service does not know');
      }
      throw new TokenRejectedError('unavailable', 'cannot fetch the JWKS of the runner');
    }
    let key = this.keyObjects.get(signingKey);
    if (key === undefined) {
      const built = createPublicKey(signingKey.getPublicKey());
      // jwks-rsa also hands out RSA and other keys: only a P-256 key published for ES256 (or for no algorithm) is usable.
      key = isP256(built) && (signingKey.alg === undefined || signingKey.alg === 'ES256') ? built : null;
      this.keyObjects.set(signingKey, key);
    }
    if (!key) throw new TokenRejectedError('unknown_key', 'the key named by the token is not an ES256 key');
    return key;
  }
}

/** The key source for these options; exactly one of `jwksUrl`, `jwks`, `publicKey`, `secret` must be given. */
export function keySource(opts: KeyOptions): KeySource {
  const given = [opts.jwksUrl, opts.jwks, opts.publicKey, opts.secret].filter((s) => s !== undefined);
  if (given.length !== 1) throw new TypeError('verify: give exactly one of `jwksUrl`, `jwks`, `publicKey` or `secret`');
  if (opts.secret !== undefined) {
    if (typeof opts.secret !== 'string' || Buffer.byteLength(opts.secret) < 32) {
      throw new TypeError('verify: `secret` must be at least 32 bytes (the runner refuses shorter ones too)');
    }
    return new StaticKey('HS256', createSecretKey(Buffer.from(opts.secret, 'utf8')));
  }
  if (opts.publicKey !== undefined) {
    const given = opts.publicKey;
    const key = typeof given === 'object' && !Buffer.isBuffer(given) ? given : createPublicKey(given);
    if (key.type !== 'public') throw new TypeError('verify: `publicKey` must be a public key');
    if (!isP256(key)) throw new TypeError('verify: `publicKey` must be an EC P-256 key (ES256)');
    return new StaticKey('ES256', key);
  }
  const interval = opts.jwksRefetchIntervalMs ?? 10_000;
  const maxAge = opts.jwksMaxAgeMs ?? 600_000;
  const timeout = opts.jwksTimeoutMs ?? 5000;
  if (!(interval > 0) || !(maxAge > 0) || !(timeout > 0)) {
    throw new TypeError('verify: `jwksRefetchIntervalMs`, `jwksMaxAgeMs` and `jwksTimeoutMs` must be positive');
  }
  if (opts.jwks !== undefined) {
    const doc = opts.jwks;
    if (typeof doc !== 'function' && !Array.isArray(doc?.keys))
      throw new TypeError('verify: `jwks` must be a JWKS document ({ keys: [...] })');
    return new JwksKeys(typeof doc === 'function' ? () => doc() : async () => doc, interval, maxAge, timeout);
  }
  let url: URL;
  try {
    url = new URL(opts.jwksUrl!);
  } catch {
    throw new TypeError('verify: `jwksUrl` is not a URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError('verify: `jwksUrl` must be http(s)');
  return new JwksKeys(httpDocument(url.href), interval, maxAge, timeout);
}
