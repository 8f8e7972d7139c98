// A private redis-server per test file, on a free port, that tests may stop and restart.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.end('PING\r\n');
      // A server with a password answers NOAUTH: it is up all the same.
      s.once('data', (d) => resolve(/PONG|NOAUTH/.test(d.toString())));
    });
    s.once('error', () => resolve(false));
    s.setTimeout(500, () => {
      s.destroy();
      resolve(false);
    });
  });
}

export class TestRedis {
  port = 0;
  dir = '';
  /** More redis-server arguments (e.g. `--appendonly yes` to keep data across stop/start, `--requirepass`); read at each start. */
  args: string[] = [];
  private child: ChildProcess | undefined;
  /** The running server's process id. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    if (!this.port) this.port = await freePort();
    if (!this.dir) this.dir = mkdtempSync(path.join(os.tmpdir(), 'jobscope-redis-'));
    this.child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        this.dir,
        '--hz',
        '100',
        ...this.args,
      ],
      {
        stdio: 'ignore',
      },
    );
    const deadline = Date.now() + 10_000;
    while (!(await answers(this.port))) {
      if (Date.now() > deadline || this.child.exitCode !== null) throw new Error(`redis-server did not start on port ${this.port}`);
      await new Promise((r) => setTimeout(r, 30));
    }
    return this;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    this.child = undefined;
  }

  /** Stops the server and removes its files. */
  async destroy(): Promise<void> {
    await this.stop();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function startRedis(args: string[] = []): Promise<TestRedis> {
  const redis = new TestRedis();
  redis.args = args;
  return redis.start();
}

/** MONITOR's quoted arguments ("set" "k" "a \"b\"") as strings (escapes other than \" and \\ are kept as written). */
function monitorArgs(text: string): string[] {
  return [...text.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1].replace(/\\(["\\])/g, '$1'));
}

/**
 * Every command Redis runs, as MONITOR shows it (those a script runs included, with `source` 'lua'), over a socket of its
 * own. Not ioredis's monitor(): it enters its monitoring state a tick after MONITOR's +OK, so on a busy server the first
 * lines, read with that +OK, fail with "Command queue state error".
 */
export async function monitorRedis(url: string, onCommand: (args: string[], source: string) => void): Promise<{ close(): void }> {
  const { hostname, port } = new URL(url);
  const socket = net.connect({ host: hostname, port: Number(port) });
  socket.setEncoding('utf8');
  let buffered = '';
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      for (let nl = buffered.indexOf('\r\n'); nl >= 0; nl = buffered.indexOf('\r\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 2);
        if (line === '+OK') resolve();
        else if (line.startsWith('-')) reject(new Error(`MONITOR refused: ${line.slice(1)}`));
        else {
          const m = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$/.exec(line);
          if (m) onCommand(monitorArgs(m[2]), m[1]);
        }
      }
    });
    socket.write('MONITOR\r\n');
  });
  socket.on('error', () => undefined);
  return { close: () => socket.destroy() };
}
