// Liveness of tokens in Redis: one key per live token, `<prefix>:token:<jti>`, TTL in milliseconds (SET PX), DEL to revoke.
// The value is non-secret metadata for `GET /api/tokens`. Each run also keeps the claims of every token it was given in
// `<prefix>:claims:<runId>` (for the dashboard's Run page). The raw token is never written anywhere.
import type { Redis } from 'ioredis';
import type { LiveToken, TokenClaims } from '../interfaces.ts';

export function tokenKey(prefix: string, jti: string): string {
  return `${prefix}:token:${jti}`;
}

export function claimsKey(prefix: string, runId: string): string {
  return `${prefix}:claims:${runId}`;
}

/** Claims histories are kept as long as failed runs are. */
const CLAIMS_KEEP_MS = 30 * 24 * 3600 * 1000;

// Registration and the claims history in one command: every Redis command costs the worker's main thread and Redis
// real CPU per run (notes/BASELINE.md), so three become one.
const REGISTER = `redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1`;

interface WithRegister {
  jobscopeRegister(tokenKey: string, claimsKey: string, meta: string, ttlMs: number, claims: string, keepMs: number): Promise<number>;
}

export class TokenStore {
  readonly redis: Redis;
  readonly prefix: string;
  constructor(redis: Redis, prefix: string) {
    this.redis = redis;
    this.prefix = prefix;
    if (!('jobscopeRegister' in redis)) redis.defineCommand('jobscopeRegister', { numberOfKeys: 2, lua: REGISTER });
  }

  /** Marks the token live until `claims.exp` (to the millisecond), or until revoked, and adds it to its run's history. */
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
    await (this.redis as unknown as WithRegister).jobscopeRegister(
      tokenKey(this.prefix, claims.jti),
      claimsKey(this.prefix, claims.run),
      JSON.stringify(meta),
      ttl,
      JSON.stringify(claims),
      CLAIMS_KEEP_MS,
    );
  }

  /** Revokes every token a run was given (its claims history lists them): one DEL, whichever host holds the run. */
  async revokeRun(runId: string): Promise<void> {
    const jtis = (await this.history(runId)).map((c) => (JSON.parse(c) as { jti?: unknown }).jti).filter((j) => typeof j === 'string');
    if (jtis.length) await this.redis.del(...jtis.map((jti) => tokenKey(this.prefix, jti)));
  }

  /** The claims of every token a run was given (raw JSON strings, oldest first). */
  history(runId: string): Promise<string[]> {
    return this.redis.lrange(claimsKey(this.prefix, runId), 0, -1);
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
