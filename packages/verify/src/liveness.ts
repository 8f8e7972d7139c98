// Is the token still live (its run going on, not revoked)? Asked either of the runner's Redis directly
// (`EXISTS <prefix>:token:<jti>`: the key lives exactly as long as the token) or, for a service that must not reach that
// Redis, of the runner's token introspection endpoint (RFC 7662). Either way an answer that does not come in time is
// `unavailable` (503): the verifier refuses rather than guess.
import { Redis } from 'ioredis';
import type { JobTokenClaims } from './claims.ts';
import { TokenRejectedError } from './errors.ts';

export interface IntrospectionOptions {
  /** The runner's `POST /oauth/introspect`. */
  url: string;
  /** This service's client id and secret (one `id:secret` pair of the runner's JOBSCOPE_INTROSPECT_CLIENTS). */
  clientId: string;
  clientSecret: string;
}

export interface LivenessOptions {
  /** The runner's Redis: a URL (a connection is opened on first use) or an ioredis client of yours. */
  redis?: string | Redis;
  /** Or ask the runner: token introspection. Give exactly one of `redis` and `introspect`. */
  introspect?: IntrospectionOptions;
  /** The runner's JOBSCOPE_PREFIX (default `jobscope`); Redis only. */
  prefix?: string;
  /** Milliseconds the check may take before the answer is 503 unavailable (default 2000). */
  livenessTimeoutMs?: number;
}

export interface Liveness {
  isLive(token: string, claims: JobTokenClaims): Promise<boolean>;
  close(): Promise<void>;
}

const unavailable = (what: string) => new TokenRejectedError('unavailable', `cannot check token liveness (${what})`);

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

class RedisLiveness implements Liveness {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly owned: boolean;
  private firstReady: Promise<void> | undefined;
  private closed = false;

  constructor(redis: string | Redis, prefix: string, timeoutMs: number) {
    this.prefix = prefix;
    this.timeoutMs = timeoutMs;
    this.owned = typeof redis === 'string';
    this.redis =
      typeof redis === 'string'
        ? new Redis(redis, {
            // Opened on first use: a verifier that is built but never asked holds no connection.
            lazyConnect: true,
            // Fail closed and fast when Redis is down: no offline queue, a command fails at once instead of waiting.
            enableOfflineQueue: false,
            maxRetriesPerRequest: 1,
            connectTimeout: 2000,
            // EXISTS is the only command sent: no INFO ready check and no CLIENT SETINFO, so a Redis ACL user allowed
            // `+exists` on `<prefix>:token:*` alone is enough (README: "A Redis user that can only check liveness").
            enableReadyCheck: false,
            disableClientInfo: true,
          })
        : redis;
    if (this.owned) this.redis.on('error', () => {});
  }

  /** Resolves when the connection this verifier opened is first ready: requests that arrive before it wait for it. */
  private connected(): Promise<void> {
    if (!this.firstReady) {
      const redis = this.redis;
      this.firstReady = new Promise<void>((resolve) => redis.once('ready', () => resolve()));
      redis.connect().catch(() => undefined);
    }
    return this.firstReady;
  }

  async isLive(_token: string, claims: JobTokenClaims): Promise<boolean> {
    if (this.closed) throw unavailable('the verifier is closed');
    try {
      // Still connecting for the first time: wait a little (one shared promise). After an outage, the first connection has
      // long been made and the command below fails at once (no offline queue): 503 without waiting.
      if (this.owned && this.redis.status !== 'ready') await withTimeout(this.connected(), this.timeoutMs);
      return (await withTimeout(this.redis.exists(`${this.prefix}:token:${claims.jti}`), this.timeoutMs)) === 1;
    } catch {
      throw unavailable('Redis unreachable');
    }
  }

  async close(): Promise<void> {
    if (!this.owned || this.closed) return;
    this.closed = true;
    // QUIT when connected, so the server has let go of the connection when close() resolves; otherwise just drop it.
    if (this.redis.status === 'ready') await withTimeout(this.redis.quit(), 1000).catch(() => undefined);
    this.redis.disconnect();
  }
}

class IntrospectionLiveness implements Liveness {
  private readonly url: string;
  private readonly authorization: string;
  private readonly timeoutMs: number;

  constructor(opts: IntrospectionOptions, timeoutMs: number) {
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw new TypeError('verify: `introspect.url` is not a URL');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError('verify: `introspect.url` must be http(s)');
    if (typeof opts.clientId !== 'string' || !opts.clientId || opts.clientId.includes(':')) {
      throw new TypeError('verify: `introspect.clientId` is required (no ":")');
    }
    if (typeof opts.clientSecret !== 'string' || opts.clientSecret.length < 16) {
      throw new TypeError('verify: `introspect.clientSecret` is required (16 characters or more)');
    }
    this.url = url.href;
    this.authorization = `Basic ${Buffer.from(`${opts.clientId}:${opts.clientSecret}`).toString('base64')}`;
    this.timeoutMs = timeoutMs;
  }

  async isLive(token: string, claims: JobTokenClaims): Promise<boolean> {
    let answer: { active?: unknown; jti?: unknown };
    try {
      const res = await fetch(this.url, {
        method: 'POST',
        headers: {
          authorization: this.authorization,
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
        },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
        redirect: 'error',
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
      answer = (await res.json()) as typeof answer;
    } catch {
      throw unavailable('introspection endpoint unreachable or refused this client');
    }
    if (answer?.active === false) return false;
    // The runner verified the same token: anything but its own jti back is not an answer to trust.
    if (answer?.active === true && answer.jti === claims.jti) return true;
    throw unavailable('unexpected introspection answer');
  }

  async close(): Promise<void> {}
}

/** The liveness check for these options: exactly one of `redis` and `introspect`. */
export function liveness(opts: LivenessOptions): Liveness {
  if ((opts.redis === undefined) === (opts.introspect === undefined) || (opts.redis !== undefined && !opts.redis)) {
    // Say what was given: `redis: process.env.REDIS_URL` with the variable unset is the usual cause.
    const shown = (v: unknown) => (v === undefined ? 'undefined' : v === '' ? 'an empty string' : v === null ? 'null' : 'given');
    throw new TypeError(
      'verify: give exactly one of `redis` (a URL or an ioredis client) and `introspect` for the liveness check ' +
        `(redis is ${shown(opts.redis)}, introspect is ${shown(opts.introspect)}; a value read from an unset environment ` +
        'variable such as REDIS_URL is undefined)',
    );
  }
  const timeout = opts.livenessTimeoutMs ?? 2000;
  if (!(timeout > 0)) throw new TypeError('verify: `livenessTimeoutMs` must be positive');
  if (opts.introspect !== undefined) return new IntrospectionLiveness(opts.introspect, timeout);
  return new RedisLiveness(opts.redis!, opts.prefix ?? 'jobscope', timeout);
}
