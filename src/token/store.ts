// Liveness of tokens in Redis: one key per live token, `<prefix>:token:<jti>`, TTL in milliseconds (SET PX), DEL to revoke.
// The value is non-secret metadata for `GET /api/tokens`; the raw token is never written anywhere.
import type { Redis } from 'ioredis';
import type { LiveToken, TokenClaims } from '../interfaces.ts';

export function tokenKey(prefix: string, jti: string): string {
  return `${prefix}:token:${jti}`;
}

export class TokenStore {
  readonly redis: Redis;
  readonly prefix: string;
  constructor(redis: Redis, prefix: string) {
    this.redis = redis;
    this.prefix = prefix;
  }

  /** Marks the token live until `claims.exp` (to the millisecond), or until revoked. */
  async register(claims: TokenClaims, expiresAtMs: number): Promise<void> {
    const ttl = Math.max(1, expiresAtMs - Date.now());
    const meta: Omit<LiveToken, 'jti'> = {
      job: claims.sub.slice('job:'.length),
      run: claims.run,
      att: claims.att,
      aud: claims.aud,
      scope: claims.scope,
      exp: new Date(claims.exp * 1000).toISOString(),
    };
    await this.redis.set(tokenKey(this.prefix, claims.jti), JSON.stringify(meta), 'PX', ttl);
  }

  async revoke(jti: string): Promise<void> {
    await this.redis.del(tokenKey(this.prefix, jti));
  }

  async isLive(jti: string): Promise<boolean> {
    return (await this.redis.exists(tokenKey(this.prefix, jti))) === 1;
  }

  /** Every live token's metadata (SCAN, so it never blocks Redis). */
  async list(): Promise<LiveToken[]> {
    const out: LiveToken[] = [];
    const pattern = tokenKey(this.prefix, '*');
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
      cursor = next;
      if (keys.length === 0) continue;
      const values = await this.redis.mget(...keys);
      keys.forEach((key, i) => {
        const value = values[i];
        if (value) out.push({ jti: key.slice(pattern.length - 1), ...(JSON.parse(value) as Omit<LiveToken, 'jti'>) });
      });
    } while (cursor !== '0');
    return out.sort((a, b) => a.exp.localeCompare(b.exp));
  }
}
