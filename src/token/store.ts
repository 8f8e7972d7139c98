// Liveness of tokens in Redis: one key per live token, `<prefix>:token:<jti>`, TTL in milliseconds (SET PX), DEL to revoke.
// The value is the token's claims (no secret: never the token) for `GET /api/tokens`, which finds the keys through an
// index (RedisKeys.tokenIndex: a sorted set of jtis by expiry, written with the key and pruned of expired and revoked
// members), never by scanning the keyspace: its cost follows the number of live tokens, not the number of keys in Redis.
// Each run also keeps the claims of every token it was given in a field of its own BullMQ hash (RUN_FIELDS.claims, for
// the Run page and for revoking a run's tokens), so the history goes when retention removes the run. The raw token is
// never written anywhere.
import type { Redis, RedisOptions } from 'ioredis';
import { LockLostError } from '../errors.ts';
import type { LiveToken, TokenClaims } from '../interfaces.ts';
import { RedisKeys, RUN_FIELDS } from '../run/redis-keys.ts';
import { scripts, TOKEN_APPLY } from '../run/scripts.ts';

/** A history written where no run hash exists (a run removed meanwhile): kept this long past its token, then gone. */
const ORPHAN_HISTORY_GRACE_MS = 60_000;
/**
 * The token index keeps a member this long past its expiry (hosts' clocks differ; the key's own TTL decides liveness), so
 * a clock ahead of the registering host's never hides a live token.
 */
const INDEX_EXPIRY_MARGIN_MS = 60_000;

/** At most this many registrations go in one call (Redis runs a script without interruption). */
const MAX_BATCH = 256;

interface Pending<T> {
  resolve(value: T): void;
  reject(err: unknown): void;
}

/** What one turn of the event loop asked of the store, sent as one APPLY call. */
interface Batch {
  deletes: string[];
  revoked: Pending<void>[];
  registerKeys: string[];
  registerArgs: (string | number)[];
  registered: Pending<number>[];
  /** Settles once the batch has been written to the connection (written()), made when first asked for. */
  written?: Promise<void>;
  wrote?: () => void;
}

const emptyBatch = (): Batch => ({ deletes: [], revoked: [], registerKeys: [], registerArgs: [], registered: [] });

/**
 * A live token as GET /api/tokens lists it, from its key's value: the token's claims (or the listing itself, as an earlier
 * jobscope wrote it: a fleet in the middle of an upgrade).
 */
export function liveTokenOf(jti: string, value: string): LiveToken {
  const parsed = JSON.parse(value) as TokenClaims | Omit<LiveToken, 'jti'>;
  if (!('sub' in parsed)) return { jti, ...parsed };
  const claims = parsed;
  return {
    jti,
    // A scope's token (background work outside runs) lists its workload subject (`consumer:orders`) as is.
    job: claims.sub.startsWith('job:') ? claims.sub.slice('job:'.length) : claims.sub,
    run: claims.run,
    att: claims.att,
    aud: claims.aud,
    scope: claims.scope,
    exp: new Date(claims.exp * 1000).toISOString(),
  };
}

/** The execution a token is registered for: its BullMQ lock, and whether it is the execution's first token. */
export interface ExecutionLock {
  key: string;
  token: string;
  /** Revoke every earlier token of the run first (a new execution starts). */
  first: boolean;
}

/**
 * The options of a store's connection (connect()'s extra): the calls of many concurrent runs share round trips
 * (auto-pipelining; see notes/BASELINE.md), but not the store's batch, which goes out once per turn of the event loop
 * already (current()): auto-pipelined, it would wait a turn more.
 */
export const TOKEN_CONNECTION: RedisOptions = { enableAutoPipelining: true, autoPipeliningIgnoredCommands: [TOKEN_APPLY] };

export class TokenStore {
  readonly redis: Redis;
  readonly prefix: string;
  readonly keys: RedisKeys;
  constructor(redis: Redis, prefix: string) {
    this.redis = redis;
    this.prefix = prefix;
    this.keys = new RedisKeys(prefix);
    scripts(redis);
  }

  private batch: Batch | undefined;

  /**
   * The batch being filled; it goes out once this turn of the event loop has handled its I/O (setImmediate: the Redis
   * replies read in one turn start and end many runs, whose tokens then share one call), or when it is full.
   */
  private current(): Batch {
    if (!this.batch) {
      this.batch = emptyBatch();
      setImmediate(this.flushLater);
    }
    return this.batch;
  }

  private readonly flushLater = () => this.flush();

  private flush(): void {
    const batch = this.batch;
    if (!batch) return;
    this.batch = undefined;
    const per = batch.registerArgs.length / Math.max(1, batch.registered.length);
    scripts(this.redis)
      .tokenApply(
        [this.keys.tokenIndex, ...batch.deletes, ...batch.registerKeys],
        [batch.deletes.length, per, this.keys.tokenPrefix, ...batch.registerArgs],
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
    // ioredis has written the call to the socket (or queued it, in order, while it reconnects).
    batch.wrote?.();
  }

  /**
   * Resolves once every registration and revocation asked of the store so far has been written to its connection, without
   * waiting for Redis's answer (register()'s and revoke()'s promises are for that). Redis runs one connection's commands in
   * the order they were written, so a command sent after this resolves, on the same connection, runs after them: the run
   * executor's completion of a run, sent on this connection, comes after the revocation of the run's tokens.
   */
  written(): Promise<void> {
    const batch = this.batch;
    if (!batch) return Promise.resolve();
    return (batch.written ??= new Promise<void>((resolve) => (batch.wrote = resolve)));
  }

  /**
   * Marks the token live until `claims.exp` (to the millisecond), or until revoked, and adds it to its run's history.
   * With `lock`, only while that execution holds the run (else LockLostError), revoking the run's earlier tokens first.
   */
  async register(claims: TokenClaims, expiresAtMs: number, lock?: ExecutionLock): Promise<void> {
    const ttl = Math.max(1, expiresAtMs - Date.now());
    const tokenKey = this.keys.token(claims.jti);
    const batch = this.current();
    // REGISTER's KEYS and ARGV (run/scripts.ts), straight into the batch. The claims are the key's value (what
    // GET /api/tokens lists, liveTokenOf) and the run's history line.
    batch.registerKeys.push(tokenKey, this.keys.run(claims.run), lock?.key ?? tokenKey, this.keys.tokenIndex);
    batch.registerArgs.push(
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
    );
    const registered = new Promise<number>((resolve, reject) => batch.registered.push({ resolve, reject }));
    if (batch.registered.length >= MAX_BATCH) this.flush();
    if ((await registered) !== 1) throw new LockLostError(claims.run);
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
    const field = await this.redis.hget(this.keys.run(runId), RUN_FIELDS.claims);
    return field ? field.split('\n').filter(Boolean) : [];
  }

  /** Resolves once the token is dead in Redis (sent with the other registrations and revocations of this turn of the event loop). */
  revoke(jti: string): Promise<void> {
    const batch = this.current();
    batch.deletes.push(this.keys.token(jti));
    return new Promise<void>((resolve, reject) => batch.revoked.push({ resolve, reject }));
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
        if (value) out.push(liveTokenOf(jti, value));
        else gone.push(jti);
      });
    }
    if (gone.length) await this.redis.zrem(index, ...gone);
    return out.sort((a, b) => a.exp.localeCompare(b.exp));
  }
}
