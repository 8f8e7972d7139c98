// Liveness of tokens in Redis: one key per live token, `<prefix>:token:<jti>`, TTL in milliseconds (SET PX), DEL to revoke.
// The value is non-secret metadata for `GET /api/tokens`, which finds the keys through an index (RedisKeys.tokenIndex: a
// sorted set of jtis by expiry, written with the key and pruned of expired and revoked members), never by scanning the
// keyspace: its cost follows the number of live tokens, not the number of keys in Redis. Each run also keeps the claims of every token it was given in a
// field of its own BullMQ hash (RUN_FIELDS.claims, for the Run page and for revoking a run's tokens), so the history goes
// when retention removes the run. The raw token is never written anywhere.
import type { Redis } from 'ioredis';
import { LockLostError } from '../errors.ts';
import type { LiveToken, TokenClaims } from '../interfaces.ts';
import { RedisKeys, RUN_FIELDS } from '../run/redis-keys.ts';

/** A history written where no run hash exists (a run removed meanwhile): kept this long past its token, then gone. */
const ORPHAN_HISTORY_GRACE_MS = 60_000;
/**
 * The token index keeps a member this long past its expiry (hosts' clocks differ; the key's own TTL decides liveness), so
 * a clock ahead of the registering host's never hides a live token.
 */
const INDEX_EXPIRY_MARGIN_MS = 60_000;

// Registration and the claims history in one command: every Redis command costs the worker's main thread and Redis
// real CPU per run (notes/BASELINE.md), so three become one. The same command keeps one live execution per run:
// - a token is registered only while its execution holds the run's BullMQ lock (ARGV[5]; '' = no lock to check), so an
//   execution that lost its run to another worker (stalled past its lock, then woke up) cannot mint a live token;
// - a new execution's first token first revokes every earlier token of the run (ARGV[6] = '1'): a crashed or stalled
//   execution's token is refused from the moment the run is re-run.
// The history is a field of the run's BullMQ hash (JSON lines), so it dies with the run. Should that hash not exist (or
// carry an expiry), the field gets one: nothing written here outlives its run by more than a token's lifetime.
// The token index gets the jti with its expiry and loses its expired members (a bounded set: the live tokens, plus those
// revoked since the last GET /api/tokens).
// KEYS: [1] token key, [2] run hash, [3] lock key, [4] token index. ARGV: [1] meta, [2] ttl ms, [3] claims, [4] orphan keep
// ms, [5] lock token, [6] revoke earlier, [7] token key prefix, [8] history field, [9] jti, [10] expiry (epoch ms), [11] the
// expiry below which members are pruned (now minus a margin, epoch ms). Returns 1, or 0 when the lock is not held.
const REGISTER = `if ARGV[5] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[5] then return 0 end
local history = redis.call('HGET', KEYS[2], ARGV[8])
if ARGV[6] == '1' and history then
  for c in string.gmatch(history, '[^\\n]+') do
    local ok, t = pcall(cjson.decode, c)
    if ok and type(t) == 'table' and type(t.jti) == 'string' then
      redis.call('DEL', ARGV[7] .. t.jti)
      redis.call('ZREM', KEYS[4], t.jti)
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[11])
redis.call('ZADD', KEYS[4], ARGV[10], ARGV[9])
local pttl = redis.call('PTTL', KEYS[2])
redis.call('HSET', KEYS[2], ARGV[8], history and (history .. '\\n' .. ARGV[3]) or ARGV[3])
if pttl ~= -1 and pttl < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return 1`;

/** KEYS and ARGV of one REGISTER call. */
const REGISTER_KEYS = 4;

// Registrations and revocations of concurrent runs share one command: everything a tick of the event loop asks for is sent
// as one call of this script (revocations first, then each registration exactly as REGISTER does it, its own lock check
// included), instead of one command per token. Each caller's promise settles only once Redis has run the whole call, so a
// token is live when its registration resolves and dead when its revocation resolves, never before.
// KEYS: the token index, the keys to delete, then REGISTER's keys of each registration. ARGV: [1] how many keys to delete,
// [2] REGISTER's ARGV count, [3] the token key prefix (a deleted key's jti leaves the index too), then REGISTER's ARGV of
// each registration. Returns REGISTER's answer for each registration, in order.
const APPLY = `local function register(KEYS, ARGV)
${REGISTER}
end
local deletes, per, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for s = 2, deletes + 1, 500 do
  local last = math.min(s + 499, deletes + 1)
  redis.call('DEL', unpack(KEYS, s, last))
  local jtis = {}
  for i = s, last do jtis[#jtis + 1] = string.sub(KEYS[i], #prefix + 1) end
  redis.call('ZREM', KEYS[1], unpack(jtis))
end
local out = {}
local k, a = deletes + 2, 4
while k <= #KEYS do
  out[#out + 1] = register({ unpack(KEYS, k, k + ${REGISTER_KEYS} - 1) }, { unpack(ARGV, a, a + per - 1) })
  k, a = k + ${REGISTER_KEYS}, a + per
end
return out`;

interface WithApply {
  jobscopeApply(numKeys: number, ...keysThenArgs: (string | number)[]): Promise<number[]>;
}

/** At most this many registrations go in one call (Redis runs a script without interruption). */
const MAX_BATCH = 256;

interface Pending<T> {
  resolve(value: T): void;
  reject(err: unknown): void;
}

/** What one tick of the event loop asked of the store, sent as one APPLY call. */
interface Batch {
  deletes: string[];
  revoked: Pending<void>[];
  registerKeys: string[];
  registerArgs: (string | number)[];
  registered: Pending<number>[];
}

const emptyBatch = (): Batch => ({ deletes: [], revoked: [], registerKeys: [], registerArgs: [], registered: [] });

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
    if (!('jobscopeApply' in redis)) redis.defineCommand('jobscopeApply', { lua: APPLY });
  }

  private batch: Batch | undefined;

  /** Adds to this tick's batch; the batch goes out once the current tick's work is done (or when it is full). */
  private enqueue(fill: (batch: Batch) => void): void {
    if (!this.batch) {
      this.batch = emptyBatch();
      process.nextTick(() => this.flush());
    }
    fill(this.batch);
    if (this.batch.registered.length >= MAX_BATCH) this.flush();
  }

  private flush(): void {
    const batch = this.batch;
    if (!batch) return;
    this.batch = undefined;
    const per = batch.registerArgs.length / Math.max(1, batch.registered.length);
    (this.redis as unknown as WithApply)
      .jobscopeApply(
        1 + batch.deletes.length + batch.registerKeys.length,
        this.keys.tokenIndex,
        ...batch.deletes,
        ...batch.registerKeys,
        batch.deletes.length,
        per,
        this.keys.tokenPrefix,
        ...batch.registerArgs,
      )
      .then(
        (answers) => {
          for (const p of batch.revoked) p.resolve();
          batch.registered.forEach((p, i) => p.resolve(Number(answers[i])));
        },
        (err: unknown) => {
          for (const p of [...batch.revoked, ...batch.registered]) p.reject(err);
        },
      );
  }

  /**
   * Marks the token live until `claims.exp` (to the millisecond), or until revoked, and adds it to its run's history.
   * With `lock`, only while that execution holds the run (else LockLostError), revoking the run's earlier tokens first.
   */
  async register(claims: TokenClaims, expiresAtMs: number, lock?: ExecutionLock): Promise<void> {
    const ttl = Math.max(1, expiresAtMs - Date.now());
    const meta: Omit<LiveToken, 'jti'> = {
      // A scope's token (background work outside runs) lists its workload subject (`consumer:orders`) as is.
      job: claims.sub.startsWith('job:') ? claims.sub.slice('job:'.length) : claims.sub,
      run: claims.run,
      att: claims.att,
      aud: claims.aud,
      scope: claims.scope,
      exp: new Date(claims.exp * 1000).toISOString(),
    };
    const tokenKey = this.keys.token(claims.jti);
    const keys = [tokenKey, this.keys.run(claims.run), lock?.key ?? tokenKey, this.keys.tokenIndex];
    const args = [
      JSON.stringify(meta),
      ttl,
      JSON.stringify(claims),
      ttl + ORPHAN_HISTORY_GRACE_MS,
      lock?.token ?? '',
      lock?.first ? '1' : '0',
      this.keys.tokenPrefix,
      RUN_FIELDS.claims,
      claims.jti,
      expiresAtMs,
      Date.now() - INDEX_EXPIRY_MARGIN_MS,
    ];
    const registered = await new Promise<number>((resolve, reject) =>
      this.enqueue((batch) => {
        batch.registerKeys.push(...keys);
        batch.registerArgs.push(...args);
        batch.registered.push({ resolve, reject });
      }),
    );
    if (registered !== 1) throw new LockLostError(claims.run);
  }

  /** Revokes every token a run was given (its claims history lists them): one DEL (and their index entries), whichever host holds the run. */
  async revokeRun(runId: string): Promise<void> {
    const jtis = (await this.history(runId)).map((c) => (JSON.parse(c) as { jti?: unknown }).jti).filter((j) => typeof j === 'string');
    if (!jtis.length) return;
    const answers = await this.redis
      .pipeline()
      .del(...jtis.map((jti) => this.keys.token(jti)))
      .zrem(this.keys.tokenIndex, ...jtis)
      .exec();
    const failed = answers?.find(([err]) => err)?.[0];
    if (failed) throw failed;
  }

  /** The claims of every token a run was given (raw JSON strings, oldest first). */
  async history(runId: string): Promise<string[]> {
    // Runs started before the history moved into the run's hash still have the old list (it expires by itself).
    const [field, legacy] = await Promise.all([
      this.redis.hget(this.keys.run(runId), RUN_FIELDS.claims),
      this.redis.lrange(this.keys.claims(runId), 0, -1),
    ]);
    return [...legacy, ...(field ? field.split('\n').filter(Boolean) : [])];
  }

  /** Resolves once the token is dead in Redis (sent with the other registrations and revocations of this tick). */
  revoke(jti: string): Promise<void> {
    return new Promise<void>((resolve, reject) =>
      this.enqueue((batch) => {
        batch.deletes.push(this.keys.token(jti));
        batch.revoked.push({ resolve, reject });
      }),
    );
  }

  async isLive(jti: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.token(jti))) === 1;
  }

  /**
   * Every live token's metadata, from the token index (never a scan of the keyspace): the index's unexpired jtis, then
   * their keys, which decide (a jti whose key is gone was revoked: it leaves the index here). Expired members are pruned.
   */
  async list(): Promise<LiveToken[]> {
    const index = this.keys.tokenIndex;
    const floor = Date.now() - INDEX_EXPIRY_MARGIN_MS;
    const answers =
      (await this.redis.pipeline().zremrangebyscore(index, '-inf', `(${floor}`).zrangebyscore(index, floor, '+inf').exec()) ?? [];
    const [err, found] = (answers[1] ?? [null, []]) as [Error | null, string[]];
    if (err) throw err;
    const out: LiveToken[] = [];
    const gone: string[] = [];
    for (let i = 0; i < found.length; i += 500) {
      const jtis = found.slice(i, i + 500);
      const values = await this.redis.mget(...jtis.map((jti) => this.keys.token(jti)));
      jtis.forEach((jti, j) => {
        const value = values[j];
        if (value) out.push({ jti, ...(JSON.parse(value) as Omit<LiveToken, 'jti'>) });
        else gone.push(jti);
      });
    }
    if (gone.length) await this.redis.zrem(index, ...gone);
    return out.sort((a, b) => a.exp.localeCompare(b.exp));
  }
}
