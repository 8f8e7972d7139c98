// --watch against a real Redis and the real folder watcher: adding, changing and removing job files reloads them without
// a restart (definitions, schedules, workers and the published definitions follow); a run in progress finishes on the old
// code; a bad file is reported and keeps its previous version. The CLI wiring is checked with the real bin at the end.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { watchJobs, type JobsWatcher } from '../src/jobs/watch.ts';
import type { Runtime } from '../src/runtime/runtime.ts';
import { BIN } from './helpers/cli.ts';
import { jobscopeFixture, until, type Api, type Fixture } from './helpers/fixture.ts';
import { jobsDir, removeDir, ROOT, type LogCapture } from './helpers/runtime.ts';

const version = (v: string, ms = 0) =>
  `export default { token: { audience: ['svc'] }, async run() { await new Promise((r) => setTimeout(r, ${ms})); return '${v}'; } };`;

let fx: Fixture;
let dir: string;
let runtime: Runtime;
let logs: LogCapture;
/** The watching runner's API: what it triggers and reports follows its reloads (a client's jobs would not). */
let api: Api;
let watcher: JobsWatcher;
const reloads: { jobs: string[]; errors: string[] }[] = [];

before(async () => {
  fx = await jobscopeFixture({
    jobs: { 'greet.ts': version('v1', 1500), 'keep.ts': version('keep') },
    env: { JOBSCOPE_PREFIX: 'w' },
    workers: true,
    server: true,
  });
  ({ runtime, logs, dir, api } = fx);
  watcher = watchJobs(dir, async (v, changes) => {
    const { jobs, errors } = await runtime.reload(dir, v, { ownsSchedules: true, changes });
    reloads.push({ jobs, errors: errors.map((e) => e.message) });
  });
});
after(async () => {
  watcher?.close();
  await fx?.close();
});

const reloaded = async (n: number) => until(() => reloads.length >= n, 10_000, `reload #${n}`);

describe('--watch', () => {
  test('a changed file: new runs use the new code, the run in progress finishes on the old', async () => {
    const old = await api.trigger('greet');
    await api.waitFor(old, (r) => r.state === 'active', 5000, 'the v1 run to start');
    writeFileSync(path.join(dir, 'greet.ts'), version('v2'));
    await reloaded(1);
    const fresh = await api.trigger('greet');
    assert.equal((await api.wait(fresh)).result, 'v2');
    assert.equal((await api.wait(old)).result, 'v1', 'the run in progress finished on the old code');
  });

  test('an added file is a job at once (triggerable, served, published, scheduled); a removed one is gone', async () => {
    writeFileSync(
      path.join(dir, 'fresh.ts'),
      `export default { token: { audience: ['svc'] }, schedule: { every: '1h' }, async run() { return 'new'; } };`,
    );
    await until(() => reloads.some((r) => r.jobs.includes('fresh')), 10_000, 'fresh to be loaded');
    assert.equal((await api.wait(await api.trigger('fresh'))).result, 'new');
    assert.ok(await fx.queue('fresh').getJobScheduler('fresh'), 'its schedule is in Redis');
    assert.ok(await fx.redis.hexists('w:registry', 'fresh'), 'published for clients');
    const before = reloads.length;
    rmSync(path.join(dir, 'fresh.ts'));
    await reloaded(before + 1);
    assert.ok(!((await api.get('/api/jobs')).body as { name: string }[]).some((j) => j.name === 'fresh'));
    assert.match((await api.post('/api/jobs/fresh/runs', { data: {} })).body.message, /unknown job "fresh"/);
    assert.equal(await fx.queue('keep').getJobScheduler('fresh'), undefined);
    assert.equal(await fx.redis.hexists('w:registry', 'fresh'), 0);
  });

  test('bad files are all reported, with their line; a broken job keeps its previous version', async () => {
    const before = reloads.length;
    writeFileSync(path.join(dir, 'greet.ts'), `export default { token: { audience: ['svc'] },\n  async run() { return 'v3' }\n  oops };`);
    writeFileSync(path.join(dir, 'typo.ts'), `export default { token: { audience: ['svc'] }, shedule: {}, async run() {} };`);
    await reloaded(before + 1);
    const last = reloads.at(-1)!;
    assert.equal(last.errors.length, 2, last.errors.join('\n'));
    assert.match(last.errors.join('\n'), /greet\.ts:3:\d+: cannot be loaded/);
    assert.match(last.errors.join('\n'), /typo\.ts: shedule: unknown field/);
    assert.equal((await api.wait(await api.trigger('greet'))).result, 'v2', 'still the last good version');
    rmSync(path.join(dir, 'typo.ts'));
    writeFileSync(path.join(dir, 'greet.ts'), version('v4'));
    await until(() => reloads.at(-1)!.errors.length === 0, 10_000, 'a clean reload');
    assert.equal((await api.wait(await api.trigger('greet'))).result, 'v4');
  });
});

describe('--watch reloads only what changed', () => {
  test('an unchanged file logs nothing and keeps its worker; a changed helper reloads every job', async () => {
    const takers = () => runtime.executor!.takers as Map<string, unknown>;
    const changedLogs = () => logs.lines.filter((l) => l.includes('job changed')).map((l) => (JSON.parse(l) as { job: string }).job);
    const keepWorker = takers().get('keep');
    const keepJob = runtime.registry.get('keep');
    assert.ok(keepWorker);
    const logged = changedLogs().length;
    const n = reloads.length;

    writeFileSync(path.join(dir, 'greet.ts'), version('v5'));
    await reloaded(n + 1);
    assert.deepEqual(changedLogs().slice(logged), ['greet']);
    assert.equal(takers().get('keep'), keepWorker, "keep's worker was not restarted");
    assert.equal(runtime.registry.get('keep'), keepJob);
    assert.equal((await api.wait(await api.trigger('greet'))).result, 'v5');

    // The same content saved again (an editor's save, a touch): nothing is reloaded at all.
    writeFileSync(path.join(dir, 'keep.ts'), version('keep'));
    writeFileSync(path.join(dir, 'greet.ts'), version('v5'));
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(reloads.length, n + 1);
    assert.deepEqual(changedLogs().slice(logged), ['greet']);
    assert.equal(takers().get('keep'), keepWorker);

    // A helper beside the jobs may be imported by any of them: every job is loaded again.
    writeFileSync(path.join(dir, '_helper.ts'), 'export const x = 1;\n');
    await reloaded(n + 2);
    assert.ok(changedLogs().slice(logged).includes('keep'));
    assert.notEqual(takers().get('keep'), keepWorker);
  });
});

describe('jobscope start --watch (the real bin)', () => {
  test('logs that it watches and reloads an added file', async () => {
    const cliDir = jobsDir({ 'one.ts': version('one') });
    const child = spawn(process.execPath, [BIN, 'worker', '--watch'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        REDIS_URL: fx.redisUrl,
        JOBSCOPE_PREFIX: 'wcli',
        JOBSCOPE_JOBS: cliDir,
        JOBSCOPE_STATE_DIR: path.join(ROOT, '.jobscope', 'test-tmp', 'state'),
        LOG_LEVEL: 'info',
      },
    });
    let log = '';
    child.stdout.on('data', (d) => (log += d));
    child.stderr.on('data', (d) => (log += d));
    try {
      await until(() => log.includes('watching the jobs folder'), 20_000, 'the watcher');
      writeFileSync(path.join(cliDir, 'two.ts'), version('two'));
      await until(() => /"jobs":\["one","two"\].*jobs reloaded/.test(log), 15_000, 'the reload');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      removeDir(cliDir);
    }
  });
});
