// ctx.exec against real processes, a real redis-server and a real HTTP service on 127.0.0.1: output order, exit codes,
// tokens in the environment and never in the log or argv, and cancel/timeout killing the whole process group.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { Runtime } from '../src/runtime/runtime.ts';
import { jobscopeFixture, type Fixture } from './helpers/fixture.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import type { LogCapture } from './helpers/runtime.ts';
import { RecordingService } from './helpers/service.ts';
import { until } from './helpers/wait.ts';

const PREFIX = 'ex';

// Scripts by name; `trap '' TERM` is inherited by the background sleep, so only SIGKILL (after the grace) stops them.
const SCRIPTS: Record<string, string> = {
  order: 'i=1; while [ $i -le 40 ]; do echo "out $i"; i=$((i+1)); done',
  fail: 'echo "working"; echo "first problem" >&2; echo "disk full" >&2; exit 1',
  call: `echo "token is $JOBSCOPE_TOKEN"; echo "pid $$"; node -e "
    fetch(process.env.JOBSCOPE_SERVICE_SVC_URL + '/from-script', { headers: { authorization: 'Bearer ' + process.env.JOBSCOPE_TOKEN, 'x-run': process.env.JOBSCOPE_RUN_ID } })
      .then((r) => { if (!r.ok) process.exit(3); })" || exit 3; sleep 1; echo "shard $JOBSCOPE_SHARD_INDEX/$JOBSCOPE_SHARD_TOTAL"; echo "secret [$JOBSCOPE_JWT_SECRET]"`,
  hang: 'sleep 300 & echo "child $!"; wait',
  stubborn: `trap '' TERM; sleep 300 & echo "child $!"; wait; wait`,
  input: 'read line; echo "got $line"',
};

const JOBS = {
  'script.ts': `
import { defineJob } from 'jobscope';
const SCRIPTS = ${JSON.stringify(SCRIPTS)};
export default defineJob({
  token: { audience: ['svc'] },
  params: { type: 'object', properties: { mode: { type: 'string' }, input: { type: 'string' } }, required: ['mode'] },
  async run(ctx) {
    const opts = { killGraceMs: 800, ...(ctx.data.input ? { input: ctx.data.input } : {}) };
    return ctx.exec('sh', ['-c', SCRIPTS[ctx.data.mode]], opts);
  },
});`,
  'slow.ts': `
import { defineJob } from 'jobscope';
export default defineJob({
  token: { audience: ['svc'] },
  timeout: '1500ms',
  async run(ctx) {
    return ctx.exec('sh', ['-c', ${JSON.stringify(SCRIPTS.stubborn)}], { killGraceMs: 500 });
  },
});`,
  'argv.ts': `
import { defineJob } from 'jobscope';
export default defineJob({
  token: { audience: ['svc'] },
  async run(ctx) { return ctx.exec('echo', [ctx.token.reveal()]); },
});`,
};

let redis: TestRedis;
let fx: Fixture;
let runtime: Runtime;
let logs: LogCapture;
let service: RecordingService;
let client: Redis;

before(async () => {
  // Redis and the service first: the service checks each token's liveness in Redis while its request is in flight.
  redis = await startRedis();
  client = new Redis(redis.url);
  service = await new RecordingService(client, PREFIX).start();
  fx = await jobscopeFixture({
    jobs: JOBS,
    redisServer: redis,
    env: { JOBSCOPE_PREFIX: PREFIX, JOBSCOPE_SERVICES: `svc=${service.url}` },
    workers: true,
  });
  ({ runtime, logs } = fx);
});

after(async () => {
  await fx.close();
  await service.stop();
  client.disconnect();
  await redis.destroy();
});

async function start(job: string, data: Record<string, unknown> = {}): Promise<string> {
  return fx.trigger(job, data);
}

/** A pid is gone when /proc has no entry for it, or only a zombie waiting to be reaped. */
function gone(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return true;
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(stat, 'utf8'));
  } catch {
    return true;
  }
}

async function pidInLog(runId: string, label: string): Promise<number> {
  let pid = 0;
  await until(
    async () => {
      const m = new RegExp(`^${label} (\\d+)$`, 'm').exec((await fx.run(runId)).logs.join('\n'));
      pid = m ? Number(m[1]) : 0;
      return pid > 0;
    },
    10_000,
    `"${label} <pid>" in the log of ${runId}`,
  );
  return pid;
}

describe('ctx.exec', () => {
  test('output lines reach the run log in order; exit 0 completes with the last stdout lines', async () => {
    const report = await fx.wait(await start('script', { mode: 'order' }));
    assert.equal(report.state, 'completed', report.error ?? '');
    const lines = report.logs.filter((l) => l.startsWith('out '));
    assert.deepEqual(
      lines,
      Array.from({ length: 40 }, (_, i) => `out ${i + 1}`),
    );
    const result = report.result as { code: number; stdout: string[] };
    assert.equal(result.code, 0);
    assert.equal(result.stdout.at(-1), 'out 40');
  });

  test('a non-zero exit fails the attempt with the last stderr lines', async () => {
    const report = await fx.wait(await start('script', { mode: 'fail' }));
    assert.equal(report.state, 'failed');
    assert.match(report.error!, /sh exited with code 1:\nfirst problem\ndisk full/);
    assert.ok(report.logs.includes('[stderr] disk full'));
  });

  test('input is written to standard input', async () => {
    const report = await fx.wait(await start('script', { mode: 'input', input: 'hello\n' }));
    assert.equal(report.state, 'completed', report.error ?? '');
    assert.ok(report.logs.includes('got hello'));
  });

  test('the process calls a service with its token from the environment; the token is in neither log nor argv', async () => {
    const runId = await start('script', { mode: 'call' });
    const pid = await pidInLog(runId, 'pid');
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const report = await fx.wait(runId);
    assert.equal(report.state, 'completed', report.error ?? '');
    const req = service.received.find((r) => r.path.endsWith('/from-script'));
    assert.ok(req?.token, 'the service got a bearer token from the script');
    assert.equal(req.sentByRun, runId, 'JOBSCOPE_RUN_ID is the run id');
    assert.equal(req.liveInRedis, true, 'the token was live while the script used it');
    assert.deepEqual(req.claims!.aud, ['svc']);
    assert.equal(req.claims!.run, runId);
    assert.ok(!cmdline.includes(req.token), 'no token in the process argv');
    const text = report.logs.join('\n');
    assert.ok(!text.includes(req.token) && !text.includes(req.token.split('.')[2]!), 'no token in the run log');
    assert.ok(report.logs.includes('token is [redacted token]'));
    assert.ok(report.logs.includes('shard 0/1'));
    assert.ok(report.logs.includes('secret []'), "jobscope's own JOBSCOPE_* configuration is not passed on");
    assert.ok(!logs.text.includes(req.token), 'no token in the worker log');
  });

  test('a token in argv is refused', async () => {
    const report = await fx.wait(await start('argv'));
    assert.equal(report.state, 'failed');
    assert.match(report.error!, /token in argv/);
  });

  test('cancel kills the whole process group (no orphan)', async () => {
    const runId = await start('script', { mode: 'hang' });
    const child = await pidInLog(runId, 'child');
    assert.equal(gone(child), false);
    const t0 = Date.now();
    await fx.client.cancel(runId, 'test');
    const report = await fx.wait(runId);
    assert.equal(report.state, 'failed');
    assert.match(report.error!, /cancelled/);
    await until(() => gone(child), 3000, `grandchild ${child} to be gone`);
    assert.ok(Date.now() - t0 < 3000, `stopped in ${Date.now() - t0} ms`);
  });

  test('timeout kills a group that ignores SIGTERM with SIGKILL after the grace', async () => {
    const runId = await start('slow');
    const child = await pidInLog(runId, 'child');
    const report = await fx.wait(runId);
    assert.equal(report.state, 'failed');
    assert.match(report.error!, /timed out after 1500 ms/);
    // Timeout at 1.5 s + grace 0.5 s: the grandchild that ignored SIGTERM is gone soon after.
    await until(() => gone(child), 2000, `grandchild ${child} to be gone`);
  });

  test('cancel of a stubborn group kills it within the grace', async () => {
    const runId = await start('script', { mode: 'stubborn' });
    const child = await pidInLog(runId, 'child');
    const t0 = Date.now();
    await fx.client.cancel(runId, 'test');
    await until(() => gone(child), 3000, `grandchild ${child} to be gone`);
    const ms = Date.now() - t0;
    assert.ok(ms >= 700, `SIGTERM was ignored, so only SIGKILL after the 800 ms grace stopped it (${ms} ms)`);
    assert.equal((await fx.wait(runId)).state, 'failed');
  });

  test('shutdown kills the group of a run still active at the deadline (the run is handed back)', async () => {
    const runId = await start('script', { mode: 'hang' });
    const child = await pidInLog(runId, 'child');
    const t0 = Date.now();
    await runtime.close(); // JOBSCOPE_SHUTDOWN_TIMEOUT is 5 s in tests
    await until(() => gone(child), 3000, `grandchild ${child} to be gone`);
    assert.ok(Date.now() - t0 < 9000, `stopped ${Date.now() - t0} ms after the shutdown began`);
  });
});
