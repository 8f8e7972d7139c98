// The JWKS the runner serves: the configured keys, plus every key that signed a token which may still be live, even after
// its file was removed in a rotation. Each runner records the public JWK of the key it signs with in one Redis sorted set,
// `<prefix>:jwks`, scored by the time until which it must stay published (at least the exp of every token it signed).
// The member is the canonical JWK JSON, so add, extend (ZADD GT), prune and list are single atomic commands.
import type { Redis } from 'ioredis';
import { connect } from '../redis/connect.ts';
import { RedisKeys } from '../run/redis-keys.ts';
import { publicJwk, type KeyStore, type PublicJwk, type SigningKey } from './signing-keys.ts';

/** A key's public JWK as one canonical string (same key -> same string on every host). */
export function canonicalJwk(key: SigningKey): string {
  return JSON.stringify(publicJwk(key));
}

/** Extra time a key stays published beyond the last exp recorded, so only one write per this period is needed. */
export const PUBLISH_HEADROOM_MS = 10 * 60_000;

/** Keeps the signing key published for as long as tokens it signed can be live. */
export class KeyPublisher {
  private readonly redis: Redis;
  private readonly key: string;
  private readonly member: string | undefined;
  private confirmedUntil = 0;
  private pending: Promise<void> | undefined;
  private pendingUntil = 0;

  constructor(redis: Redis, prefix: string, signing: SigningKey) {
    this.redis = redis;
    this.key = new RedisKeys(prefix).jwks;
    // HS256 has no public key to publish.
    this.member = signing.alg === 'ES256' ? canonicalJwk(signing) : undefined;
  }

  /**
   * Makes sure the key stays published until at least `untilMs` (a token's exp). Returns undefined when it already is,
   * otherwise a promise that resolves once Redis has it: a mint must not hand out a token whose key could vanish first.
   */
  ensure(untilMs: number): Promise<void> | undefined {
    if (!this.member || untilMs <= this.confirmedUntil) return undefined;
    if (this.pending && untilMs <= this.pendingUntil) return this.pending;
    const target = untilMs + PUBLISH_HEADROOM_MS;
    const p: Promise<void> = this.redis
      .zadd(this.key, 'GT', target, this.member)
      .then(() => {
        this.confirmedUntil = Math.max(this.confirmedUntil, target);
      })
      .finally(() => {
        if (this.pending === p) this.pending = undefined;
      });
    this.pending = p;
    this.pendingUntil = target;
    return p;
  }
}

/** Public JWKs recorded in Redis whose tokens may still be live; prunes the rest. */
export async function publishedJwks(redis: Redis, prefix: string, nowMs = Date.now()): Promise<PublicJwk[]> {
  const key = new RedisKeys(prefix).jwks;
  await redis.zremrangebyscore(key, '-inf', nowMs);
  const members = await redis.zrangebyscore(key, nowMs, '+inf');
  const out: PublicJwk[] = [];
  for (const m of members) {
    try {
      out.push(JSON.parse(m) as PublicJwk);
    } catch {
      // not ours: skipped
    }
  }
  return out;
}

/**
 * The JWKS document to serve: configured keys first, then keys retired from the configuration whose tokens may still be
 * live. If Redis cannot be read, the configured keys alone (verifiers then reject old-key tokens: closed, not open).
 */
export async function currentJwks(keys: KeyStore, redis: Redis, prefix: string): Promise<{ keys: PublicJwk[] }> {
  const configured = keys.jwks().keys;
  let published: PublicJwk[] = [];
  try {
    published = await publishedJwks(redis, prefix);
  } catch {
    published = [];
  }
  const seen = new Set(configured.map((k) => k.kid));
  return { keys: [...configured, ...published.filter((k) => !seen.has(k.kid) && (seen.add(k.kid), true))] };
}

/** `currentJwks` over a short-lived connection (for the CLI, which holds no Redis client of its own). */
export async function currentJwksAt(keys: KeyStore, redisUrl: string, prefix: string): Promise<{ keys: PublicJwk[] }> {
  const redis = connect(redisUrl, { enableOfflineQueue: true, maxRetriesPerRequest: 1, connectTimeout: 2000, lazyConnect: true });
  try {
    await redis.connect().catch(() => undefined);
    return await currentJwks(keys, redis, prefix);
  } finally {
    redis.disconnect();
  }
}
