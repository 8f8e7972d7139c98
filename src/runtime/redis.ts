// Redis connections, and the embedded default: a private redis-server when none is configured and none answers.
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { parseRedisUrl } from '../config.ts';
import { JobscopeError } from '../errors.ts';

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
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
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
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}
