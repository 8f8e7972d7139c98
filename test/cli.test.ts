// The real `jobscope` bin as child processes: worker, trigger --wait, list, cancel, graceful shutdown.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { jobsDir, removeDir, ROOT } from './helpers/runtime.ts';
import { until } from './helpers/wait.ts';
import { BIN, runCli, type CliResult } from './helpers/cli.ts';

const JOBS = {
  'add.ts': `import { defineJob } from 'jobscope';
export default defineJob({
  description: 'adds two numbers',
  params: { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' } }, required: ['a', 'b'], additionalProperties: false },
  token: { audience: ['svc'] },
  async run(ctx) { await ctx.log('adding'); return { sum: (ctx.data.a as number) + (ctx.data.b as number), sub: ctx.token.claims.sub }; },
});`,
  'fail.ts': `export default { token: { audience: ['svc'] }, async run() { throw new Error('the upstream said no'); } };`,
  'slow.ts': `export default { description: 'takes 1.5 s', token: { audience: ['svc'] }, schedule: { cron: '0 0 4 * * *' },
    async run(ctx) { await new Promise((r) => setTimeout(r, 1500)); return { finished: true, jti: ctx.token.claims.jti }; } };`,
  'wait.ts': `export default { token: { audience: ['svc'] }, async run(ctx) {
    await new Promise((resolve, reject) => { const t = setTimeout(resolve, 20000); ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); }); });
  } };`,
};

let redis: TestRedis;
let dir: string;
let client: Redis;
let worker: ChildProcess | undefined;
let workerErr = '';

function env(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    REDIS_URL: redis.url,
    JOBSCOPE_JOBS: dir,
    JOBSCOPE_PREFIX: 'cli',
    JOBSCOPE_STATE_DIR: path.join(ROOT, '.jobscope', 'test-tmp', 'state'),
    LOG_LEVEL: 'info',
  };
}

function cli(args: string[], timeoutMs = 20_000): Promise<CliResult> {
  return runCli(args, env(), timeoutMs);
}

function startWorker(): Promise<void> {
  workerErr = '';
  worker = spawn(process.execPath, [BIN, 'worker'], { env: env(), cwd: ROOT });
  worker.stderr!.on('data', (d) => (workerErr += d));
  return until(() => workerErr.includes('workers started'), 20_000, 'the worker to start');
}

before(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  dir = jobsDir(JOBS);
  await startWorker();
});

after(async () => {
  worker?.kill('SIGKILL');
  client.disconnect();
  await redis.destroy();
  removeDir(dir);
});

describe('jobscope CLI', () => {
  test('trigger --wait prints the result as JSON and exits 0', async () => {
    const { code, stdout } = await cli(['trigger', 'add', '--data', '{"a":2,"b":40}', '--wait']);
    assert.equal(code, 0);
    const out = JSON.parse(stdout);
    assert.equal(out.state, 'completed');
    assert.deepEqual(out.result, { sum: 42, sub: 'job:add' });
    assert.match(out.runId, /^add:\d+$/);
    assert.equal(out.outcome, 'completed');
    assert.equal(out.triggeredBy, `cli:${os.userInfo().username}`, 'the run records who triggered it');
  });

  test('trigger --wait --timeout: with no worker for the job, it says so and gives up at the timeout with exit 1', async () => {
    // Another prefix: the worker of this file serves nothing there.
    const { code, stdout, stderr } = await runCli(['trigger', 'add', '--data', '{"a":1,"b":1}', '--wait', '--timeout', '6s'], {
      ...env(),
      JOBSCOPE_PREFIX: 'cli-idle',
    });
    assert.equal(code, 1);
    const out = JSON.parse(stdout);
    assert.equal(out.state, 'waiting');
    assert.equal(out.error, 'still waiting after 6s');
    assert.match(stderr, /no worker serves "add" right now: start one with `jobscope worker`/);
    assert.match(stderr, /add:\d+ waits in the queue; --wait gives up after --timeout 6s/);
  });

  test('trigger --wait with no worker says so at once and gives up after 30 s without --timeout', async () => {
    const t0 = Date.now();
    // When the run is enqueued (BullMQ's id counter moves): "at once" is measured from there, not from a loaded start-up.
    const counter = 'cli-idle:add:id';
    const idBefore = await client.get(counter);
    let enqueuedAt = 0;
    const watch = setInterval(() => {
      void client.get(counter).then((v) => {
        if (!enqueuedAt && v !== idBefore) enqueuedAt = Date.now();
      });
    }, 25);
    const child = spawn(process.execPath, [BIN, 'trigger', 'add', '--data', '{"a":1,"b":1}', '--wait'], {
      env: { ...env(), JOBSCOPE_PREFIX: 'cli-idle' },
      cwd: ROOT,
    });
    let stdout = '';
    let stderr = '';
    let warnedAt = 0;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      if (!warnedAt && stderr.includes('no worker serves')) warnedAt = Date.now();
    });
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`still waiting after 60 s\n${stderr}`)), 60_000);
      child.once('exit', (c) => (clearTimeout(timer), resolve(c)));
    });
    clearInterval(watch);
    const took = Date.now() - t0;
    assert.equal(code, 1);
    assert.ok(enqueuedAt && warnedAt, 'enqueued and warned');
    assert.ok(warnedAt - enqueuedAt < 2500, `the warning came ${warnedAt - enqueuedAt} ms after the run was enqueued`);
    assert.match(stderr, /--wait gives up after 30 s \(set --timeout to wait longer\)/);
    assert.ok(Date.now() - enqueuedAt >= 30_000 && took < 50_000, `gave up after ${took} ms`);
    const out = JSON.parse(stdout);
    assert.equal(out.state, 'waiting');
    assert.equal(out.error, 'still waiting after 30s and no worker serves "add"');
  });

  test('trigger --wait on a failing job prints its error and exits 1', async () => {
    const { code, stdout } = await cli(['trigger', 'fail', '--wait']);
    assert.equal(code, 1);
    const out = JSON.parse(stdout);
    assert.equal(out.state, 'failed');
    assert.equal(out.error, 'the upstream said no');
  });

  test('trigger without --wait prints the run id; bad data, bad JSON and unknown jobs exit non-zero with the reason', async () => {
    const queued = await cli(['trigger', 'add', '--data', '{"a":1,"b":1}']);
    assert.equal(queued.code, 0);
    assert.match(JSON.parse(queued.stdout).runId, /^add:\d+$/);

    const bad = await cli(['trigger', 'add', '--data', '{"a":"x"}', '--wait']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid data for job "add": \/ must have required property 'b'; \/a must be integer/);
    assert.deepEqual(JSON.parse(bad.stdout).issues[1], { path: '/a', message: 'must be integer' });

    const notJson = await cli(['trigger', 'add', '--data', '{a:1}']);
    assert.equal(notJson.code, 2);
    assert.match(notJson.stderr, /--data is not valid JSON/);

    const unknown = await cli(['trigger', 'nope']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown job "nope"; known jobs: add, fail, slow, wait/);
  });

  test('list shows the jobs, their schedules and next fire times', async () => {
    const { code, stdout } = await cli(['list']);
    assert.equal(code, 0);
    assert.match(stdout, /^add\n {2}adds two numbers\n {2}schedule: manual$/m);
    assert.match(stdout, /^slow\n {2}takes 1\.5 s\n {2}schedule: cron 0 0 4 \* \* \*\n {2}next: \d{4}-\d\d-\d\dT\d\d:00:00\.000Z, /m);
    const json = JSON.parse((await cli(['list', '--json'])).stdout);
    assert.deepEqual(
      json.map((j: { name: string }) => j.name),
      ['add', 'fail', 'slow', 'wait'],
    );
    assert.equal(json.find((j: { name: string }) => j.name === 'slow').nextRuns.length, 5);
  });

  test('cancel aborts a running run on the worker process and revokes its token at once', async () => {
    const { stdout } = await cli(['trigger', 'wait']);
    const { runId } = JSON.parse(stdout);
    await until(async () => (await client.keys('cli:token:*')).length === 1, 10_000, 'the run to start');
    const cancelled = await cli(['cancel', runId]);
    assert.equal(cancelled.code, 0);
    assert.deepEqual(JSON.parse(cancelled.stdout), { runId, outcome: 'signalled' });
    assert.equal((await client.keys('cli:token:*')).length, 0);
    const state = await cli(['trigger', 'add', '--data', '{"a":0,"b":0}', '--wait']); // the worker is free again
    assert.equal(state.code, 0);
    const again = await cli(['cancel', runId]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /has already been cancelled; nothing to cancel/);
  });

  test('SIGTERM lets the active run finish, revokes its token and exits 0', async () => {
    const { stdout } = await cli(['trigger', 'slow']);
    const { runId } = JSON.parse(stdout);
    await until(async () => (await client.keys('cli:token:*')).length === 1, 10_000, 'the slow run to start');
    const exited = new Promise<number | null>((resolve) => worker!.once('exit', (code) => resolve(code)));
    worker!.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.match(workerErr, /shutting down/);
    assert.match(workerErr, /"msg":"stopped"/);
    const id = runId.split(':')[1];
    const job = await client.hgetall(`cli:slow:${id}`);
    assert.equal(JSON.parse(job.returnvalue).finished, true, 'the active run completed before the process exited');
    assert.equal((await client.keys('cli:token:*')).length, 0);
    assert.doesNotMatch(workerErr, /eyJ[\w-]+\.[\w-]+\./, 'no token in the worker logs');
  });

  test('a second signal during a graceful shutdown exits at once', async () => {
    await startWorker();
    const { stdout } = await cli(['trigger', 'wait']);
    const { runId } = JSON.parse(stdout);
    await until(async () => (await client.keys('cli:token:*')).length === 1, 10_000, 'the run to start');
    const exited = new Promise<number | null>((resolve) => worker!.once('exit', (code) => resolve(code)));
    worker!.kill('SIGTERM');
    await until(() => workerErr.includes('shutting down'), 5000, 'the graceful shutdown to begin');
    const t0 = Date.now();
    worker!.kill('SIGINT');
    assert.equal(await exited, 130);
    assert.ok(Date.now() - t0 < 3000, 'exited without waiting for the 20 s run');
    // The killed worker could not revoke: the token dies at its expiry, and the run is recovered as stalled by BullMQ.
    const [key] = await client.keys('cli:token:*');
    assert.ok((await client.pttl(key)) > 0, 'the orphaned token still has a bounded lifetime');
    assert.ok(runId);
  });
});
