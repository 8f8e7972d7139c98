// The embedded default: a private redis-server, started when no REDIS_URL is configured and none answers on 6379.
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { JobscopeError } from '../errors.ts';

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
