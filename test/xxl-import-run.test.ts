// Imported xxl-job jobs, run: a GLUE_SHELL script calls a verifying service with its run token (and fails when it exits 1),
// a `then` chain fires, and a job stopped in xxl-job stays paused (across restarts) until resumed, and stays resumed.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import jwt from 'jsonwebtoken';
import { Redis } from 'ioredis';
import type { RunView } from '../src/index.ts';
import { runCli } from './helpers/cli.ts';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { ROOT, removeDir } from './helpers/runtime.ts';
import { RecordingService } from './helpers/service.ts';
import { createDb, dropDb, type Db } from './helpers/xxl-estate.ts';

const PREFIX = 'xr';
const TMP = path.join(ROOT, '.jobscope', 'test-tmp');

const SCRIPTS = {
  call: [
    '#!/bin/bash',
    'out=$(curl -sf -H "Authorization: Bearer $JOBSCOPE_TOKEN" "${JOBSCOPE_SERVICE_SVC_URL%/}/verify?param=$1") || { echo "service refused" >&2; exit 1; }',
    'echo "service said $out"',
  ].join('\n'),
  fail: 'echo "starting"\necho "about to fail" >&2\nexit 1',
  parent: 'echo "parent ran"',
  child: 'echo "child ran as $JOBSCOPE_RUN_ID"',
  tick: 'echo tick',
  python: 'import os, sys\nprint("python got", sys.argv[1], "shard", os.environ["JOBSCOPE_SHARD_INDEX"])',
};

let redis: TestRedis;
let client: Redis;
let db: Db;
let dir: string;
/** The runner process (a restart is a new one on the same Redis and folder). */
let proc: Fixture;
let service: RecordingService;

async function open(): Promise<Fixture> {
  const fx = await jobscopeFixture({
    dir,
    redisServer: redis,
    env: { JOBSCOPE_PREFIX: PREFIX, JOBSCOPE_SERVICES: `svc=${service.url}` },
    schedules: true,
    server: true,
  });
  // Imported jobs keep their xxl-job executor as their group: a worker serves them with --group, as in production.
  await fx.runtime.startWorkers(undefined, ['xxl-job-executor-sample']);
  return fx;
}

before(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  service = await new RecordingService(client, PREFIX).start();
  db = await createDb(`jobscope_xxl_run_${process.pid}`, '3.4.2');
  const row = (id: number, desc: string, glue: string, source: string, extra: Record<string, unknown> = {}) => ({
    id,
    job_group: 1,
    job_desc: desc,
    author: 'x',
    schedule_type: 'NONE',
    schedule_conf: '',
    misfire_strategy: 'DO_NOTHING',
    executor_route_strategy: 'FIRST',
    executor_handler: '',
    executor_param: '',
    executor_block_strategy: 'SERIAL_EXECUTION',
    glue_type: glue,
    glue_source: source,
    child_jobid: '',
    trigger_status: 1,
    ...extra,
  });
  const rows = [
    row(1, 'verify call', 'GLUE_SHELL', SCRIPTS.call, { executor_param: 'hello' }),
    row(2, 'fails', 'GLUE_SHELL', SCRIPTS.fail),
    row(3, 'parent', 'GLUE_SHELL', SCRIPTS.parent, { child_jobid: '4' }),
    row(4, 'child', 'GLUE_SHELL', SCRIPTS.child),
    row(5, 'stopped tick', 'GLUE_SHELL', SCRIPTS.tick, { schedule_type: 'CRON', schedule_conf: '* * * * * ?', trigger_status: 0 }),
    row(6, 'python job', 'GLUE_PYTHON', SCRIPTS.python, { executor_param: '{"n": 1}' }),
  ];
  const columns = Object.keys(rows[0]!);
  await db.connection.query('DELETE FROM xxl_job_info');
  await db.connection.query(`INSERT INTO xxl_job_info (${columns.join(', ')}) VALUES ?`, [rows.map((r) => Object.values(r))]);
  dir = mkdtempSync(path.join(TMP, 'xxl-run-'));
  const args = ['import', 'xxl-job', '--from', db.url, '--out', dir, '--audience', 'svc', '--tz', 'UTC'];
  const r = await runCli(args, { PATH: process.env.PATH, HOME: process.env.HOME }, 60_000);
  assert.equal(r.code, 0, r.stderr);
  proc = await open();
});

after(async () => {
  await proc?.close();
  await service?.stop();
  client?.disconnect();
  await redis?.destroy();
  if (db) await dropDb(db);
  if (dir) removeDir(dir);
});

async function run(job: string): Promise<RunView> {
  return proc.wait(await proc.trigger(job), 30_000);
}

describe('imported xxl-job jobs run', () => {
  test('a GLUE_SHELL script calls a verifying service with its run token', async () => {
    const report = await run('verify-call');
    assert.equal(report.state, 'completed', report.error ?? '');
    const req = service.received.find((r) => r.path.startsWith('/verify'));
    assert.ok(req?.token, 'the service got a bearer token');
    assert.equal(req.path, '/verify?param=hello', 'executor_param is the first argument');
    const claims = jwt.verify(req.token, proc.runtime.keys.current.verifyKey, { algorithms: ['ES256'], audience: 'svc' }) as jwt.JwtPayload;
    assert.equal(claims.sub, 'job:verify-call');
    assert.equal(claims.run, report.runId);
    assert.equal(req.liveInRedis, true);
    assert.ok(report.logs.some((l) => l.startsWith('service said {"ok":true')));
    assert.ok(!report.logs.join('\n').includes(req.token));
  });

  test('a script that exits 1 fails the run with its stderr', async () => {
    const report = await run('fails');
    assert.equal(report.state, 'failed');
    assert.match(report.error!, /bash exited with code 1:\nabout to fail/);
  });

  test('a GLUE_PYTHON script gets the JSON param and the shard', async () => {
    const report = await run('python-job');
    assert.equal(report.state, 'completed', report.error ?? '');
    assert.ok(report.logs.includes('python got {"n":1} shard 0'), report.logs.join('\n'));
  });

  test('child_jobid became then: the child fires after the parent', async () => {
    const parent = await run('parent');
    assert.equal(parent.state, 'completed', parent.error ?? '');
    const [childId] = (await proc.waitFor(parent.runId, (r) => r.children.length === 1, 10_000, 'the child run')).children;
    const child = await proc.wait(childId!, 30_000);
    assert.equal(child.state, 'completed', child.error ?? '');
    assert.ok(child.logs.includes(`child ran as ${childId}`));
  });

  test('a job stopped in xxl-job stays paused across restarts until resumed, and stays resumed', async () => {
    const summary = async () => (await proc.api.job('stopped-tick')) as { paused: boolean; counts: Record<string, number> };
    const counts = async () => (await summary()).counts;
    assert.equal((await summary()).paused, true);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal((await counts()).completed + (await counts()).failed, 0, 'an every-second schedule did not fire while paused');
    await proc.close();
    proc = await open();
    assert.equal((await summary()).paused, true, 'still paused after a restart');
    await proc.runtime.resume('stopped-tick');
    await until(async () => (await counts()).completed > 0, 10_000, 'a fire after resume');
    await proc.close();
    proc = await open();
    assert.equal((await summary()).paused, false, 'the resume holds across a restart');
    await proc.runtime.pause('stopped-tick');
  });
});
