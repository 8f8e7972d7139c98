// Liveness of tokens in Redis: one key per live token, `<prefix>:token:<jti>`, TTL in milliseconds (SET PX), DEL to revoke.
// The value is non-secret metadata for `GET /api/tokens`. Each run also keeps the claims of every token it was given in
// `<prefix>:claims:<runId>` (for the dashboard's Run page). The raw token is never written anywhere.
import type { Redis } from 'ioredis';
import { LockLostError } from '../errors.ts';
import type { LiveToken, TokenClaims } from '../interfaces.ts';
import { RedisKeys } from '../keys.ts';
import { scanTargets } from '../runtime/redis.ts';

/** Claims histories are kept as long as failed runs are. */
const CLAIMS_KEEP_MS = 30 * 24 * 3600 * 1000;

// Registration and the claims history in one command: every Redis command costs the worker's main thread and Redis
// real CPU per run (notes/BASELINE.md), so three become one. The same command keeps one live execution per run:
// - a token is registered only while its execution holds the run's BullMQ lock (ARGV[5]; '' = no lock to check), so an
//   execution that lost its run to another worker (stalled past its lock, then woke up) cannot mint a live token;
// - a new execution's first token first revokes every earlier token of the run (ARGV[6] = '1'): a crashed or stalled
//   execution's token is refused from the moment the run is re-run.
// KEYS: [1] token key, [2] claims list, [3] lock key. ARGV: [1] meta, [2] ttl ms, [3] claims, [4] history keep ms,
// [5] lock token, [6] revoke earlier, [7] token key prefix. Returns 1, or 0 when the lock is not held.
const REGISTER = `if ARGV[5] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[5] then return 0 end
if ARGV[6] == '1' then
  for _, c in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    local ok, t = pcall(cjson.decode, c)
    if ok and type(t) == 'table' and type(t.jti) == 'string' then redis.call('DEL', ARGV[7] .. t.jti) end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1`;

interface WithRegister {
  jobscopeRegister(
    tokenKey: string,
    claimsKey: string,
    lockKey: string,
    meta: string,
    ttlMs: number,
    claims: string,
    keepMs: number,
    lockToken: string,
    revokeEarlier: string,
    tokenPrefix: string,
  ): Promise<number>;
}

/** The execution a token is registered for: its BullMQ lock, and whether it is the execution's first token. */
export interface ExecutionLock {
  key: string;
  token: string;
  /** Revoke every earlier token of the run first (a new execution starts). */
  first: boolean;
}

export class TokenStore {
  readonly redis: Redis;
  readonly prefix: string;
  readonly keys: RedisKeys;
  constructor(redis: Redis, prefix: string) {
    this.redis = redis;
    this.prefix = prefix;
    this.keys = new RedisKeys(prefix);
    if (!('jobscopeRegister' in redis)) redis.defineCommand('jobscopeRegister', { numberOfKeys: 3, lua: REGISTER });
  }

  /**
   * Marks the token live until `claims.exp` (to the millisecond), or until revoked, and adds it to its run's history.
   * With `lock`, only while that execution holds the run (else LockLostError), revoking the run's earlier tokens first.
   */
  async register(claims: TokenClaims, expiresAtMs: number, lock?: ExecutionLock): Promise<void> {
    const ttl = Math.max(1, expiresAtMs - Date.now());
    const meta: Omit<LiveToken, 'jti'> = {
      job: claims.sub.slice('job:'.length),
      run: claims.run,
      att: claims.att,
      aud: claims.aud,
      scope: claims.scope,
      exp: new Date(claims.exp * 1000).toISOString(),
    };
    const tokenKey = this.keys.token(claims.jti);
    const registered = await (this.redis as unknown as WithRegister).jobscopeRegister(
      tokenKey,
      this.keys.claims(claims.run),
      lock?.key ?? tokenKey,
      JSON.stringify(meta),
      ttl,
      JSON.stringify(claims),
      CLAIMS_KEEP_MS,
      lock?.token ?? '',
      lock?.first ? '1' : '0',
      this.keys.tokenPrefix,
    );
    if (registered !== 1) throw new LockLostError(claims.run);
  }

  /** Revokes every token a run was given (its claims history lists them): one DEL, whichever host holds the run. */
  async revokeRun(runId: string): Promise<void> {
    const jtis = (await this.history(runId)).map((c) => (JSON.parse(c) as { jti?: unknown }).jti).filter((j) => typeof j === 'string');
    if (jtis.length) await this.redis.del(...jtis.map((jti) => this.keys.token(jti)));
  }

  /** The claims of every token a run was given (raw JSON strings, oldest first). */
  history(runId: string): Promise<string[]> {
    return this.redis.lrange(this.keys.claims(runId), 0, -1);
  }

  async revoke(jti: string): Promise<void> {
    await this.redis.del(this.keys.token(jti));
  }

  async isLive(jti: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.token(jti))) === 1;
  }

  /** Every live token's metadata (SCAN, so it never blocks Redis). */
  async list(): Promise<LiveToken[]> {
    const out: LiveToken[] = [];
    const pattern = this.keys.token('*');
    // A Redis Cluster is scanned master by master (all of jobscope's keys share one slot, so one of them has them all).
    for (const node of scanTargets(this.redis)) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
        cursor = next;
        if (keys.length === 0) continue;
        const values = await node.mget(...keys);
        keys.forEach((key, i) => {
          const value = values[i];
          if (value) out.push({ jti: key.slice(pattern.length - 1), ...(JSON.parse(value) as Omit<LiveToken, 'jti'>) });
        });
      } while (cursor !== '0');
    }
    return out.sort((a, b) => a.exp.localeCompare(b.exp));
  }
}
