// The generated admin login of `jobscope server` without JOBSCOPE_USER/JOBSCOPE_PASSWORD: printed once, kept in the state
// folder (mode 0600), the same at the next start (which says where it is instead of printing it). Real processes, a private
// Redis, HTTP on 127.0.0.1.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BIN } from './helpers/cli.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { jobsDir, removeDir, ROOT } from './helpers/runtime.ts';
import { until } from './helpers/wait.ts';

let redis: TestRedis;
let jobs: string;
let state: string;

before(async () => {
  redis = await startRedis();
  jobs = jobsDir({ 'hello.ts': `export default { token: { audience: ['svc'] }, async run() { return 'hi'; } };` });
  state = mkdtempSync(path.join(os.tmpdir(), 'jobscope-admin-'));
});
after(async () => {
  await redis.destroy();
  removeDir(jobs);
  rmSync(state, { recursive: true, force: true });
});

/** Starts `jobscope server`, waits for its dashboard, returns what it printed and its URL, and stops it. */
async function serveOnce(): Promise<{ log: () => string; url: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [BIN, 'server'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      REDIS_URL: redis.url,
      JOBSCOPE_PREFIX: 'adm',
      JOBSCOPE_JOBS: jobs,
      JOBSCOPE_STATE_DIR: state,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
    },
  });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  await until(() => /log in as admin|password: /.test(log) && log.includes('dashboard at'), 30_000, 'jobscope server');
  const url = /dashboard at (http:\/\/[^/]+)/.exec(log)![1];
  const stop = async () => {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  return { log: () => log, url, stop };
}

const me = (url: string, password: string) =>
  fetch(`${url}/api/me`, { headers: { authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}` } });

test('the generated admin password is printed once and kept in the state folder across restarts', async () => {
  const first = await serveOnce();
  const password = /password: (\S+)/.exec(first.log())?.[1];
  assert.ok(password, first.log());
  const file = path.join(state, 'admin-password');
  assert.equal(readFileSync(file, 'utf8').trim(), password);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal((await me(first.url, password)).status, 200);
  assert.doesNotMatch(
    first
      .log()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .join('\n'),
    new RegExp(password),
    'not in the log lines',
  );
  await first.stop();

  const second = await serveOnce();
  assert.doesNotMatch(second.log(), new RegExp(password), 'printed once, not at every start');
  assert.match(second.log(), new RegExp(`log in as admin with the password in ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.equal((await me(second.url, password)).status, 200, 'the same password works after the restart');
  await second.stop();
});
