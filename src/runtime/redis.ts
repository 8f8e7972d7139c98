// Redis connections, and the embedded default: a private redis-server when none is configured and none answers.
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { parseRedisUrl } from '../config.ts';
import { JobscopeError } from '../errors.ts';
import type { Logger } from '../log.ts';

/**
 * A connection BullMQ accepts for queues and workers (it requires maxRetriesPerRequest: null), to one server, the master a
 * Sentinel names (followed across failovers), or a Redis Cluster. A Cluster is typed as a Redis: jobscope uses the
 * commands both have, and every key of one installation shares the prefix's hash tag (see config.ts), so one slot.
 */
export function connect(url: string, extra: RedisOptions = {}): Redis {
  const target = parseRedisUrl(url);
  const base: RedisOptions = { maxRetriesPerRequest: null, ...extra };
  let redis: Redis;
  if (target.kind === 'single') redis = new Redis(url, base);
  else if (target.kind === 'sentinel') {
    const { sentinels, name, username, password, db, tls, sentinelPassword } = target;
    redis = new Redis({ ...base, sentinels, name, username, password, db, sentinelPassword, ...(tls ? { tls: {}, sentinelTLS: {} } : {}) });
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

export function isListening(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export interface EmbeddedRedis {
  url: string;
  /** The redis-server's process id (and process group: it runs in a group of its own). */
  pid: number;
  stop(): Promise<void>;
}

function redisServerBinary(): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'redis-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this PATH entry
    }
  }
  return null;
}

/** Starts `redis-server` on 127.0.0.1:`port` with its data in `dir`; resolves once it answers. */
export async function startEmbeddedRedis(dir: string, port = 6379): Promise<EmbeddedRedis> {
  const bin = redisServerBinary();
  if (!bin) {
    throw new JobscopeError(
      'ERR_NO_REDIS',
      'no Redis: REDIS_URL is not set, nothing answers on 127.0.0.1:6379 and redis-server is not installed.\n' +
        '  Fix one of: install redis-server (apt-get install redis-server / brew install redis),\n' +
        '              or run `docker compose up -d redis`, or set REDIS_URL to your Redis.',
    );
  }
  mkdirSync(dir, { recursive: true });
  const child = spawn(
    bin,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      path.resolve(dir),
      '--appendonly',
      'yes',
      '--save',
      '60 1',
      // Redis wakes blocked workers on its timer: at the default 10 Hz a scheduled run starts up to 100 ms late.
      '--hz',
      '100',
      '--daemonize',
      'no',
      '--logfile',
      'redis.log',
    ],
    // A group of its own: a terminal's Ctrl-C goes to jobscope's group only, so Redis outlives the graceful shutdown
    // (hand-backs, revocations) that needs it; jobscope stops it last.
    { stdio: 'ignore', detached: true },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Outside the terminal's group it would outlive a jobscope that exits any other way (an error, a second Ctrl-C).
  const orphanGuard = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  };
  process.once('exit', orphanGuard);
  const deadline = Date.now() + 10_000;
  while (!(await isListening('127.0.0.1', port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new JobscopeError('ERR_NO_REDIS', `the embedded redis-server did not start; see ${path.join(dir, 'redis.log')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid!,
    async stop() {
      process.off('exit', orphanGuard);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
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

const OUTAGE = /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|Connection is closed|Stream isn't writeable/i;

/**
 * Logs Redis errors from many connections (one BullMQ worker per job, each retrying) as a person wants to read them: a
 * refusal with a reason once per reason with what to do, an outage once per `everyMs` with how many errors it stood for,
 * anything else as it comes.
 */
export class RedisErrorLog {
  private readonly logger: Pick<Logger, 'warn' | 'error'>;
  private readonly everyMs: number;
  private readonly refusals = new Set<string>();
  private lastOutage = 0;
  private since = 0;
  /** Asks the server what it says to a new connection, when errors look like an outage: it may be a refusal (maxclients). */
  private readonly probe: (() => Promise<string | null>) | undefined;

  constructor(logger: Pick<Logger, 'warn' | 'error'>, opts: { everyMs?: number; probe?: () => Promise<string | null> } = {}) {
    this.logger = logger;
    this.everyMs = opts.everyMs ?? 30_000;
    this.probe = opts.probe;
  }

  note(err: Error, bindings: Record<string, unknown> = {}, msg = 'Redis error'): void {
    const refusal = refusalOf(err);
    if (refusal) {
      if (this.refusals.has(refusal)) return;
      this.refusals.add(refusal);
      this.logger.error({ ...bindings, err: err.message }, refusal);
      return;
    }
    if (!OUTAGE.test(err.message)) return void this.logger.error({ ...bindings, err: err.message }, msg);
    this.since++;
    const now = Date.now();
    if (now - this.lastOutage < this.everyMs) return;
    this.lastOutage = now;
    void this.probe?.()
      .then((said) => {
        if (said && refusalOf(new Error(said))) this.note(new Error(said.trim().replace(/^-/, '')), bindings, msg);
      })
      .catch(() => undefined);
    this.logger.warn(
      { ...bindings, err: err.message, errors: this.since },
      `Redis unreachable (errors like this are logged once per ${Math.round(this.everyMs / 1000)} s); runs resume when it is back`,
    );
    this.since = 0;
  }
}
