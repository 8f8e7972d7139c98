// Two projects on one Redis, as real processes: each folder has its own package.json and jobs/. The second project with
// the default prefix is refused (start-up and the CLI), naming the first project and the prefix to set; the first project's
// schedule and runs are untouched; with its own prefix the second project runs beside the first.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Control } from '../src/control/control.ts';
import { prefixFor } from '../src/control/project.ts';
import { loadRegistry } from '../src/jobs/registry.ts';
import { BIN, runCli } from './helpers/cli.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { until } from './helpers/wait.ts';

let redis: TestRedis;
let client: Redis;
const dirs: string[] = [];
const children: ChildProcess[] = [];

function project(name: string, jobs: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jobscope-project-'));
  dirs.push(dir);
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }));
  mkdirSync(path.join(dir, 'jobs'));
  for (const [file, source] of Object.entries(jobs)) writeFileSync(path.join(dir, 'jobs', file), source);
  return dir;
}

const hello = (who: string) => `export default { token: { audience: ['svc'] }, async run() { return '${who}'; } };`;

function env(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    REDIS_URL: redis.url,
    PORT: '0',
    HOST: '127.0.0.1',
    JOBSCOPE_USER: 'admin',
    JOBSCOPE_PASSWORD: 'admin-password-1234',
    JOBSCOPE_STATE_DIR: path.join(dir, '.jobscope'),
    JOBSCOPE_SHUTDOWN_TIMEOUT: '3s',
    LOG_LEVEL: 'info',
    ...extra,
  };
}

async function start(dir: string, extra: Record<string, string> = {}): Promise<{ child: ChildProcess; log: () => string }> {
  let log = '';
  const child = spawn(process.execPath, [BIN, 'start'], { env: env(dir, extra), cwd: dir });
  children.push(child);
  child.stderr!.on('data', (d) => (log += d));
  child.stdout!.on('data', (d) => (log += d));
  await until(() => log.includes('dashboard at') || child.exitCode !== null, 40_000, 'jobscope start');
  assert.equal(child.exitCode, null, log);
  return { child, log: () => log };
}

let a: string;
let b: string;

before(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  a = project('proj-a', { 'hello.ts': hello('a'), 'tick.ts': hello('tick').replace('token:', "schedule: { every: '1h' }, token:") });
  b = project('@acme/proj-b', { 'hello.ts': hello('b'), 'other.ts': hello('other') });
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  client.disconnect();
  await redis.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('two projects on one Redis', () => {
  test('the second project is refused with the default prefix; the first keeps its schedule and runs', async () => {
    const first = await start(a);
    assert.match(first.log(), /"project":"proj-a"/);
    assert.equal(await client.get('jobscope:project'), 'proj-a');

    const refused = await runCli(['start'], env(b), 40_000, '', b);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /belongs to another project, "proj-a" \(its jobs: hello, tick\)/);
    assert.match(refused.stderr, /this is "@acme\/proj-b"/);
    assert.match(refused.stderr, /JOBSCOPE_PREFIX=acme-proj-b/);
    assert.doesNotMatch(refused.stderr, /schedules synced/);

    // The CLI of the other project is refused too: its `trigger hello` would go to the first project's queue.
    const trigger = await runCli(['trigger', 'hello', '--wait'], env(b), 40_000, '', b);
    assert.equal(trigger.code, 1);
    assert.match(trigger.stderr, /belongs to another project, "proj-a"/);

    const tick = new Queue('tick', { connection: client, prefix: 'jobscope' });
    assert.ok(await tick.getJobScheduler('tick'), "the first project's schedule is still there");
    await tick.close();
    assert.deepEqual((await client.hkeys('jobscope:registry')).sort(), ['hello', 'tick']);

    // With its own prefix the second project runs beside the first; each one's runs go to its own workers.
    const second = await start(b, { JOBSCOPE_PREFIX: 'acme-proj-b' });
    assert.match(second.log(), /"project":"@acme\/proj-b"/);
    for (let i = 0; i < 2; i++) {
      const ra = await runCli(['trigger', 'hello', '--wait'], env(a), 40_000, '', a);
      assert.equal(JSON.parse(ra.stdout).result, 'a', ra.stderr);
      const rb = await runCli(['trigger', 'hello', '--wait'], env(b, { JOBSCOPE_PREFIX: 'acme-proj-b' }), 40_000, '', b);
      assert.equal(JSON.parse(rb.stdout).result, 'b', rb.stderr);
    }
    const again = new Queue('tick', { connection: client, prefix: 'jobscope' });
    assert.ok(await again.getJobScheduler('tick'));
    await again.close();

    for (const c of [first.child, second.child]) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGINT');
      await exited;
    }
  });

  test('schedule sync removes only the schedules its own project created', async () => {
    // Defence in depth under the refusal: a sync of project B on A's prefix (no jobs called `tick`) keeps A's `tick`.
    const registry = await loadRegistry(path.join(b, 'jobs'));
    const control = new Control({ redisUrl: redis.url, prefix: 'jobscope', registry, project: '@acme/proj-b' });
    try {
      assert.equal(await client.hget('jobscope:schedule-owner', 'tick'), 'proj-a');
      const report = await control.syncSchedules();
      assert.deepEqual(report.removed, []);
      const tick = new Queue('tick', { connection: client, prefix: 'jobscope' });
      assert.ok(await tick.getJobScheduler('tick'));
      // Its own project's sync (no tick in this registry either) does remove it.
      const mine = new Control({ redisUrl: redis.url, prefix: 'jobscope', registry, project: 'proj-a' });
      assert.deepEqual((await mine.syncSchedules()).removed, ['tick']);
      assert.equal(await tick.getJobScheduler('tick'), undefined);
      await tick.close();
      await mine.close();
    } finally {
      await control.close();
    }
  });

  test('the suggested prefix is a valid one', () => {
    assert.equal(prefixFor('@acme/proj-b', 'jobscope'), 'acme-proj-b');
    assert.equal(prefixFor('my app', '{jobscope}'), '{my-app}');
  });
});
