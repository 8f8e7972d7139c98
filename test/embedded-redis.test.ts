// The embedded default Redis that `jobscope start` launches when none is configured and none answers.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Redis } from 'ioredis';
import { isListening, startEmbeddedRedis } from '../src/cli/redis-server.ts';
import { BIN } from './helpers/cli.ts';
import { freePort } from './helpers/redis.ts';
import { jobsDir, removeDir, ROOT } from './helpers/runtime.ts';
import { until } from './helpers/wait.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'jobscope-embedded-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('starts a private redis-server with its data in the state folder, and stops it', async () => {
  const port = await freePort();
  const embedded = await startEmbeddedRedis(path.join(dir, 'redis'), port);
  try {
    assert.equal(embedded.url, `redis://127.0.0.1:${port}`);
    const client = new Redis(embedded.url);
    await client.set('k', 'v');
    assert.equal(await client.get('k'), 'v');
    assert.deepEqual(await client.config('GET', 'appendonly'), ['appendonly', 'yes']);
    client.disconnect();
    assert.ok(existsSync(path.join(dir, 'redis', 'redis.log')));
  } finally {
    await embedded.stop();
  }
  assert.equal(await isListening('127.0.0.1', port), false);
});

test('without redis-server installed, the error names the fixes', async () => {
  const saved = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    await assert.rejects(startEmbeddedRedis(path.join(dir, 'none'), await freePort()), (err: Error) => {
      assert.match(err.message, /redis-server is not installed/);
      assert.match(err.message, /install redis-server/);
      assert.match(err.message, /docker compose up -d redis/);
      return true;
    });
  } finally {
    process.env.PATH = saved;
  }
});

/** The process group of a process (field 5 of /proc/<pid>/stat, after the command name in parentheses). */
function processGroup(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('Ctrl-C (SIGINT to the process group) stops jobscope start within its deadline, then its embedded Redis', async () => {
  const port = await freePort();
  const jobs = jobsDir({
    'slow.ts': `export default { token: { audience: ['svc'] }, async run(ctx) {
      await new Promise((resolve, reject) => { const t = setTimeout(resolve, 60000); ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); }); });
    } };`,
  });
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    JOBSCOPE_EMBEDDED_REDIS_PORT: String(port),
    JOBSCOPE_JOBS: jobs,
    JOBSCOPE_STATE_DIR: path.join(dir, 'state'),
    JOBSCOPE_USER: 'admin',
    JOBSCOPE_PASSWORD: 'admin-password-1234',
    JOBSCOPE_SHUTDOWN_TIMEOUT: '2s',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
  };
  // detached: a process group of its own, as a shell gives a foreground command; the terminal's Ctrl-C goes to that group.
  const child = spawn(process.execPath, [BIN, 'start'], { env, cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let redisPid = 0;
  try {
    await until(() => log.includes('dashboard at') || child.exitCode !== null, 40_000, 'jobscope start');
    redisPid = Number(/"pid":(\d+),"msg":"no REDIS_URL/.exec(log)?.[1]);
    assert.ok(redisPid > 0, log);
    assert.notEqual(processGroup(redisPid), child.pid, 'the embedded redis-server runs in a process group of its own');
    assert.equal(processGroup(child.pid!), child.pid);

    // A run in progress: the shutdown hands it back, which needs Redis up until the workers are closed.
    const url = /dashboard at (http:\/\/[^/]+)/.exec(log)![1];
    const res = await fetch(`${url}/api/jobs/slow/runs`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from('admin:admin-password-1234').toString('base64')}`,
        'content-type': 'application/json',
      },
      body: '{}',
    });
    assert.equal(res.status, 202);
    await until(() => log.includes('"msg":"run started"'), 20_000, 'the run to start');

    const t0 = Date.now();
    process.kill(-child.pid!, 'SIGINT');
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 15_000))]);
    assert.equal(code, 0, `exit code (${Date.now() - t0} ms)\n${log}`);
    assert.ok(Date.now() - t0 < 2000 + 5000, `exited after ${Date.now() - t0} ms`);
    assert.match(log, /"msg":"stopped"/);
    assert.doesNotMatch(log, /ECONNREFUSED/);
    await until(() => !alive(redisPid), 5000, 'the embedded redis-server to exit');
    assert.equal(await isListening('127.0.0.1', port), false);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    if (redisPid && alive(redisPid)) process.kill(redisPid, 'SIGKILL');
    removeDir(jobs);
  }
});
