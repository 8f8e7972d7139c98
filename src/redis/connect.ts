// Redis connections: one way to connect (a server, a Sentinel's master, a Cluster), and how a process reads and logs its
// connections' errors.
import net from 'node:net';
import type { Worker } from 'bullmq';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { closeHandler } from 'ioredis/built/redis/event_handler.js';
import type { Logger } from '../log.ts';
import { parseRedisUrl } from './url.ts';

/**
 * A connection BullMQ accepts for queues and workers (it requires maxRetriesPerRequest: null), to one server, the master a
 * Sentinel names (followed across failovers), or a Redis Cluster. A Cluster is typed as a Redis: jobscope uses the
 * commands both have, and every key of one installation shares the prefix's hash tag (see config.ts), so one slot.
 */
export function connect(url: string, extra: RedisOptions = {}): Redis {
  const target = parseRedisUrl(url);
  const base = { maxRetriesPerRequest: null, retryStrategy: reconnectDelay, ...extra } as Options;
  let redis: Redis;
  if (target.kind === 'single') redis = new Connection(url, base);
  else if (target.kind === 'sentinel') {
    const { sentinels, name, username, password, db, tls, sentinelPassword } = target;
    redis = new Connection({
      ...base,
      sentinels,
      name,
      username,
      password,
      db,
      sentinelPassword,
      ...(tls ? { tls: {}, sentinelTLS: {} } : {}),
    });
  } else {
    const { enableAutoPipelining, ...redisOptions } = base;
    const cluster = new Cluster(target.nodes, {
      redisOptions: { ...redisOptions, username: target.username, password: target.password, ...(target.tls ? { tls: {} } : {}) },
      enableAutoPipelining,
      // BullMQ's blocking commands must not be failed by the cluster's own retry limit.
      clusterRetryStrategy: (times) => Math.min(times * 100, 2000),
    });
    redis = cluster as unknown as Redis;
  }
  // ioredis retries on its own; an unhandled 'error' event would crash the process instead.
  redis.on('error', () => {});
  return redis;
}

/** jobscope reads replies in ioredis's legacy shapes (its default); no caller asks for another. */
type Options = RedisOptions & { replyMapping?: 'legacy' };

/**
 * An ioredis connection that ends when it is disconnected while it waits to reconnect, and that can be retired.
 * - ioredis 6.0.0 does not end such a connection: the stream it would close is already gone, so 'end' never comes and the
 *   commands queued for it never settle (redis/ioredis#2169, open). BullMQ's graceful Worker.close() waits for its blocking
 *   connection's 'end', so a worker closed in that window (up to 2.2 s after Redis is back, see reconnectDelay) never
 *   finished closing, nor did the process's shutdown. Such a disconnect is ended here as ioredis ends one that never
 *   connected: through its own close handler (the disconnect has cleared the reconnect timer and marked the close as
 *   manual), which sets 'end' and rejects the queued commands.
 * - duplicate() keeps the class: BullMQ makes its blocking connections with it.
 * - retire(): see closeWorker.
 */
class Connection extends Redis {
  private retired = false;

  override duplicate(override?: Partial<RedisOptions>): Redis {
    return new Connection({ ...this.options, ...override } as Options);
  }

  override disconnect(reconnect = false): void {
    const waiting = this.status === 'reconnecting';
    super.disconnect(reconnect);
    if (waiting && !reconnect && this.status === 'reconnecting') closeHandler(this)();
  }

  override connect(callback?: () => void): Promise<void> {
    if (this.retired) return Promise.reject(new Error('Connection is closed.'));
    return super.connect(callback);
  }

  /** Disconnects, and refuses to connect again. */
  retire(): void {
    this.retired = true;
    this.disconnect();
  }
}

/**
 * Closes a BullMQ Worker made on a connect() connection, and then its blocking connection for good. BullMQ 6.7 resets a
 * blocking wait that outlived its watchdog (as a wait queued during a Redis outage does) by connecting that connection
 * again, without looking whether the worker is closing: a worker closed while it did so left the connection open after its
 * close, reconnecting forever with nobody listening to its errors. `force`: as Worker.close's.
 */
export async function closeWorker(worker: Worker, force = false): Promise<void> {
  await worker.close(force);
  // Its client settles once the connection is ready or has ended (a closed worker's has, unless BullMQ connected it again).
  const blocking = (await worker.backend.blockingConnection?.client.catch(() => undefined)) as Partial<Connection> | undefined;
  blocking?.retire?.();
}

/**
 * How long a lost connection waits before its next attempt: exponential from 50 ms, capped at 2 s (ioredis 6's default caps
 * at 5 s: runs would resume up to 5 s after Redis is back), with jitter so a fleet's connections do not all come at once.
 */
export function reconnectDelay(times: number): number {
  return Math.min(2 ** Math.min(times - 1, 10) * 50, 2000) + Math.floor(Math.random() * 200);
}

/**
 * What to do about an error Redis answered that reconnecting will not cure (a limit, a login, an ACL), or null for an
 * outage (refused, reset, closed), which ioredis retries by itself.
 */
export function refusalOf(err: Error): string | null {
  const m = err.message;
  if (/max number of clients reached/i.test(m)) {
    return (
      'Redis refused the connection: its maxclients limit is reached. Raise maxclients (redis.conf, or CONFIG SET maxclients N) ' +
      'or run fewer jobscope processes on this Redis'
    );
  }
  if (/WRONGPASS|NOAUTH|invalid username-password/i.test(m)) return 'Redis refused the login: check the user and password in REDIS_URL';
  if (/NOPERM/i.test(m)) return "Redis's ACL refused a command to this user: give it the commands and keys jobscope needs";
  if (/CLUSTERDOWN|MOVED|CROSSSLOT/i.test(m))
    return 'Redis Cluster refused a command: check the cluster and that the prefix has a hash tag';
  return null;
}

/**
 * What a Redis server says to a new connection before it is asked anything: nothing when it accepts it, an error line when
 * it refuses it at once (maxclients), which a client only sees as EPIPE on its first write.
 */
export function greetingOf(redis: Redis, timeoutMs = 500): Promise<string | null> {
  const { host, port, path: socketPath } = (redis as { options?: RedisOptions }).options ?? {};
  if (redis instanceof Cluster || (redis as { options?: RedisOptions }).options?.sentinels) return Promise.resolve(null);
  return new Promise((resolve) => {
    const socket = socketPath ? net.connect(socketPath) : net.connect({ host: host ?? '127.0.0.1', port: port ?? 6379 });
    let text = '';
    const done = () => {
      socket.destroy();
      resolve(text || null);
    };
    socket.setTimeout(timeoutMs, done);
    socket.on('data', (d: Buffer) => {
      text += d.toString('utf8');
      if (text.includes('\n')) done();
    });
    socket.once('error', done);
    socket.once('close', done);
  });
}

const OUTAGE =
  /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|Connection is closed|Stream isn't writeable|Socket closed unexpectedly|max retries per request/i;

/** Is this error one of an unreachable Redis (refused, reset, closed), which ioredis retries by itself? */
export function isOutage(err: Error): boolean {
  return OUTAGE.test(err.message);
}

/** What the readiness probe and the shutdown are told about Redis: up, or lost since when, how often retried, and why. */
export interface RedisState {
  up: boolean;
  /** While lost: when it was lost (ms since the epoch). */
  lostAt?: number;
  /** While lost: how long so far (ms). */
  downMs?: number;
  /** While lost: reconnect attempts of the process's main connection since it was lost. */
  reconnectAttempts?: number;
  /** The last error (an outage's connect error, or a refusal's reason). */
  reason?: string;
}

type Watched = Pick<Redis, 'on' | 'status' | 'ping'>;

/** A logger to tell (createClient's may lack `info`: the line saying Redis is back is then a warning). */
export type RedisLogger = Pick<Logger, 'warn' | 'error'> & Partial<Pick<Logger, 'info'>>;

/**
 * The Redis health of one process, and how its errors are logged: every connection of the process (the control plane's,
 * the token store's, the cancel subscriber, BullMQ's queues and workers, the alert worker, QueueEvents...) reports into one
 * instance (the Runtime's, `control.redisLog`), through `watch(connection)` or `note(err)` for errors that a BullMQ object
 * re-emits. An operator reads:
 * - a refusal with a reason (wrong password, ACL, maxclients, cluster) once per reason, with what to do;
 * - an outage as one warning when Redis is lost, one every `everyMs` (30 s, JOBSCOPE_REDIS_OUTAGE_LOG_INTERVAL) while it stays
 *   lost with how long and how many reconnect attempts, and one line when it is back: never a line per connection per retry;
 * - anything else as it comes (one JSON line each).
 */
export class RedisErrorLog {
  private readonly logger: RedisLogger;
  readonly everyMs: number;
  private readonly refusals = new Set<string>();
  /** Asks the server what it says to a new connection, when errors look like an outage: it may be a refusal (maxclients). */
  private readonly probe: (() => Promise<string | null>) | undefined;
  /** The process's main connection: its reconnects are counted, and its PING says Redis is back. */
  private main: Watched | undefined;
  private lostAt = 0;
  private attempts = 0;
  private errors = 0;
  private lastError = '';
  private refusal: string | undefined;
  private repeat: NodeJS.Timeout | undefined;
  private recheck: NodeJS.Timeout | undefined;
  private checking = false;
  private askedAt = 0;
  private checkedAt = 0;
  private closed = false;

  constructor(logger: RedisLogger, opts: { everyMs?: number; probe?: () => Promise<string | null>; main?: Watched } = {}) {
    this.logger = logger;
    this.everyMs = opts.everyMs ?? 30_000;
    this.probe = opts.probe;
    if (opts.main) this.watch(opts.main, { main: true });
  }

  /** Is Redis lost now (an outage noticed and not yet over)? */
  get lost(): boolean {
    return this.lostAt > 0;
  }

  state(): RedisState {
    if (!this.lost) return { up: true, ...(this.refusal ? { reason: this.refusal } : {}) };
    return {
      up: false,
      lostAt: this.lostAt,
      downMs: Date.now() - this.lostAt,
      reconnectAttempts: this.attempts,
      reason: this.refusal ?? this.lastError,
    };
  }

  /**
   * Takes a connection's errors (instead of an empty 'error' listener) and, for the main one, its reconnects and its return.
   * Returns the connection. The listeners stay for the connection's life: an 'error' with no listener would crash the process.
   */
  watch<R extends Watched>(redis: R, opts: { main?: boolean; bindings?: Record<string, unknown> } = {}): R {
    const onError = (err: Error) => this.note(err, opts.bindings);
    redis.on('error', onError);
    if (opts.main) {
      this.main = redis;
      const onReconnecting = () => {
        if (this.lost) this.attempts++;
      };
      // Closed under us (not by close()): lost at once, even before the first reconnect fails.
      const onClose = () => {
        if (!this.closed) this.lose('the connection to Redis closed');
      };
      const onReady = () => this.check();
      redis.on('reconnecting', onReconnecting);
      redis.on('close', onClose);
      redis.on('ready', onReady);
    }
    return redis;
  }

  note(err: Error, bindings: Record<string, unknown> = {}, msg = 'Redis error'): void {
    if (this.closed && isOutage(err)) return;
    const refusal = refusalOf(err);
    if (refusal) {
      this.refusal = refusal;
      if (this.refusals.has(refusal)) return;
      this.refusals.add(refusal);
      this.logger.error({ ...bindings, redis: 'refused', err: err.message }, refusal);
      return;
    }
    if (!isOutage(err)) {
      // While Redis is lost, whatever fails fails because of it: counted in the next "still unreachable" line, not logged.
      if (this.lost) return void this.errors++;
      return void this.logger.error({ ...bindings, err: err.message }, msg);
    }
    this.errors++;
    this.lastError = err.message;
    if (this.lost) return;
    if (this.main?.status !== 'ready') return this.lose(err.message);
    // Other connections fail while the main one works: a killed client, an idle timeout, or a server that refuses new
    // connections (maxclients, which a client sees only as a reset): ask the server, and whether the main one still answers.
    this.askServer();
    // At most one PING a second for this, however many connections fail (a thousand refused ones would ask a thousand times).
    if (Date.now() - this.checkedAt < 1000) return;
    this.checkedAt = Date.now();
    this.check(err.message);
  }

  /** Redis is unreachable: one line now, one every `everyMs` while it lasts, and a check for its return. */
  private lose(reason: string): void {
    if (this.lost || this.closed) return;
    this.lostAt = Date.now();
    this.attempts = 0;
    this.errors = 0;
    this.lastError ||= reason;
    this.refusal = undefined;
    this.logger.warn(
      { redis: 'lost', err: reason },
      `Redis connection lost (${reason}): runs resume by themselves when it is back; ` +
        `this is repeated every ${Math.round(this.everyMs / 1000)} s while it lasts`,
    );
    this.askedAt = 0;
    this.askServer();
    this.repeat = setInterval(() => {
      const downMs = Date.now() - this.lostAt;
      this.logger.warn(
        { redis: 'lost', downMs, reconnectAttempts: this.attempts, errors: this.errors, err: this.refusal ?? this.lastError },
        `Redis still unreachable after ${Math.round(downMs / 1000)} s (${this.attempts} reconnect attempts): ${this.refusal ?? this.lastError}`,
      );
      this.errors = 0;
      this.askedAt = 0;
      this.askServer();
    }, this.everyMs);
    this.repeat.unref();
    // A connection that comes back says so ('ready'); this also catches a main connection that never closed.
    this.recheck = setInterval(() => this.check(), Math.min(1000, this.everyMs));
    this.recheck.unref();
  }

  /** Does the main connection answer? Then an outage is over; when up, an error that looked like one was not. */
  private check(reason?: string): void {
    const main = this.main;
    if (this.checking || this.closed || !main) return;
    if (main.status !== 'ready') {
      if (reason) this.lose(reason);
      return;
    }
    this.checking = true;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no answer to PING within 2 s')), 2000)));
    Promise.race([main.ping(), late])
      .then(
        () => this.back(),
        (err: Error) => this.lose(reason ?? err.message),
      )
      .finally(() => {
        clearTimeout(timer);
        this.checking = false;
      });
  }

  private back(): void {
    if (!this.lost) return;
    const downMs = Date.now() - this.lostAt;
    const line = { redis: 'back', downMs, reconnectAttempts: this.attempts };
    const msg = `Redis is back after ${(downMs / 1000).toFixed(1)} s (${this.attempts} reconnect attempts): runs resume`;
    if (this.logger.info) this.logger.info(line, msg);
    else this.logger.warn(line, msg);
    this.stopTimers();
    this.lostAt = 0;
    this.lastError = '';
    this.refusal = undefined;
  }

  /**
   * The server may refuse new connections with a reason (maxclients) that clients only see as a reset: ask it what it says
   * to a new connection, at most once per `everyMs`.
   */
  private askServer(): void {
    const now = Date.now();
    if (now - this.askedAt < this.everyMs) return;
    this.askedAt = now;
    void this.probe?.()
      .then((said) => {
        if (said && refusalOf(new Error(said))) this.note(new Error(said.trim().replace(/^-/, '')));
      })
      .catch(() => undefined);
  }

  private stopTimers(): void {
    clearInterval(this.repeat);
    clearInterval(this.recheck);
    this.repeat = this.recheck = undefined;
  }

  /** The process is closing its connections: their errors are its own doing, not news. Listeners stay (no unhandled 'error'). */
  close(): void {
    this.closed = true;
    this.stopTimers();
  }
}
