// Redis outages as an operator lives them (issue 15, part 5), with a real redis-server (its data kept on disk across the
// outage) and real `jobscope start` processes serving 21 jobs (so a line per queue or per connection would show):
// - Redis stopped for ~7 s: the log has one "lost" line, one "still unreachable" line per interval (set to 2 s here through
//   JOBSCOPE_REDIS_OUTAGE_LOG_INTERVAL instead of 30 s) with how long and how many reconnect attempts, and one "back" line;
//   every line is one JSON object; /readyz is 503 with a reason during the outage and 200 after; a run active when Redis
//   went away finishes once it is back.
// - SIGTERM while Redis is down: the process exits within JOBSCOPE_SHUTDOWN_TIMEOUT + 5 s, naming the run it could not hand
//   back and the run whose outcome it could not record; once Redis is back another process recovers both (stalled-run
//   rule) and they complete.
// - A refusal with a reason (a wrong password, at start-up and after a restart of Redis with a password) is logged once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Cluster, JobscopeProcess, sleep, waitFor, type LogLine } from './helpers/cluster.ts';
import { startRedis } from './helpers/redis.ts';

const INTERVAL_MS = 2000;
const SHUTDOWN_TIMEOUT_MS = 3000;
/** The bound on SIGTERM -> exit while Redis is down that the issue sets: the shutdown timeout plus 5 s. */
const EXIT_BOUND_MS = SHUTDOWN_TIMEOUT_MS + 5000;

const JOBS: Record<string, string> = {
  // Sleeps ctx.data.ms (honouring ctx.signal); in a process started with QUICK=1, 200 ms (a recovered run finishes fast).
  'slow.ts': `export default {
    token: { audience: ['rec'] },
    concurrency: 2,
    async run(ctx) {
      const ms = process.env.QUICK === '1' ? 200 : ctx.data.ms;
      await new Promise((resolve, reject) => {
        const t = setTimeout(resolve, ms);
        ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); }, { once: true });
      });
      return { pid: process.pid };
    },
  };`,
};
for (let i = 0; i < 20; i++) JOBS[`j${i}.ts`] = `export default { token: { audience: ['rec'] }, async run() { return ${i}; } };`;

let cluster: Cluster;

before(async () => {
  cluster = await Cluster.start({
    prefix: 'outage',
    jobs: JOBS,
    // The runs in Redis outlive the outage (a Redis that loses its data on restart is another story).
    redisArgs: ['--appendonly', 'yes', '--appendfsync', 'always'],
    env: {
      JOBSCOPE_REDIS_OUTAGE_LOG_INTERVAL: `${INTERVAL_MS}ms`,
      JOBSCOPE_SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_MS}ms`,
    },
  });
});

after(async () => {
  await cluster?.close();
});

const msg = (l: LogLine) => String(l.json?.msg ?? l.text);
const isLost = (l: LogLine) => l.json?.redis === 'lost' && /^Redis connection lost/.test(msg(l));
const isStillLost = (l: LogLine) => l.json?.redis === 'lost' && /^Redis still unreachable/.test(msg(l));
const isBack = (l: LogLine) => l.json?.redis === 'back';

async function readyz(proc: JobscopeProcess): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${proc.url}/readyz`, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function notJson(lines: LogLine[]): LogLine[] {
  return lines.filter((l) => l.text.trim() !== '' && l.json === undefined);
}

describe('Redis outage', () => {
  test('a few lines per outage (lost, still lost every interval, back), all JSON; /readyz 503 then 200; the run finishes', async (t) => {
    const proc = await cluster.spawn('start');
    try {
      const { body: triggered } = await cluster.trigger(proc, 'slow', { ms: 3000 });
      const runId = String(triggered.runId);
      await proc.waitForLog(new RegExp(`"run":"${runId}".*"msg":"run started"`), 10_000);

      const mark = proc.lines.length;
      const stoppedAt = Date.now();
      await cluster.redis.stop();
      await waitFor(() => proc.lines.slice(mark).some(isLost), 5000, 'the "Redis connection lost" line');

      const down = await readyz(proc);
      assert.equal(down.status, 503, JSON.stringify(down.body));
      assert.match(String(down.body.reason), /Redis unreachable for \d+ s \(\d+ reconnect attempts\)/);

      // The handler ends during the outage (3 s): its completion waits for Redis.
      await sleep(stoppedAt + 3.5 * INTERVAL_MS - Date.now());
      await cluster.restartRedis();
      const back = await waitFor(() => proc.lines.slice(mark).find(isBack), 10_000, 'the "Redis is back" line');
      await sleep(500); // anything logged right after the return belongs to the window too
      const window = proc.lines.slice(mark);

      assert.deepEqual(notJson(window), [], `lines that are not JSON:\n${proc.tail(40)}`);
      // This test's own /readyz request is logged by the request log: not the outage's doing.
      const outageLines = window.filter((l) => !(l.json?.msg === 'request' && l.json?.path === '/readyz'));
      t.diagnostic(`${outageLines.length} log lines over a ${back.json?.downMs} ms outage with 21 jobs`);
      assert.equal(window.filter(isLost).length, 1, proc.tail(40));
      // One per interval of the outage (it lasted 7 s and the time for the connection to come back: up to ~2 s).
      const still = window.filter(isStillLost);
      const intervals = Math.floor(Number(back.json?.downMs) / INTERVAL_MS);
      assert.ok(
        still.length >= 3 && Math.abs(still.length - intervals) <= 1,
        `${still.length} "still unreachable" lines over ${back.json?.downMs} ms at a ${INTERVAL_MS} ms interval:\n${proc.tail(40)}`,
      );
      // Lost, still lost, back, and the run that finished meanwhile ("run completed"): nothing per queue or connection.
      assert.ok(
        outageLines.length <= still.length + 4,
        `${outageLines.length} lines over a ${back.json?.downMs} ms outage of 21 queues:\n${proc.tail(40)}`,
      );
      for (const l of still) {
        assert.equal(typeof l.json?.downMs, 'number');
        assert.equal(typeof l.json?.reconnectAttempts, 'number');
      }
      assert.ok(Number(still.at(-1)!.json!.reconnectAttempts) >= 1, 'reconnect attempts counted');
      assert.equal(window.filter(isBack).length, 1);
      assert.ok(Number(back.json?.downMs) >= 3 * INTERVAL_MS, `downMs ${back.json?.downMs}`);
      assert.deepEqual(
        window.filter((l) => /worker error|Redis error|alert delivery worker error|ECONNREFUSED/.test(msg(l)) && !l.json?.redis),
        [],
        'no error line per queue or per connection',
      );

      await waitFor(async () => (await readyz(proc)).status === 200, 10_000, '/readyz to answer 200 again');
      const report = await cluster.finished(proc, runId, 20_000);
      assert.equal(report.state, 'completed', JSON.stringify(report));
      assert.deepEqual(notJson(proc.lines), [], 'no line of the whole process is raw text');
    } finally {
      await proc.stop();
    }
  });

  test('SIGTERM while Redis is down exits within the shutdown timeout + 5 s, naming the run; another worker recovers it', async (t) => {
    // A short lock: the run is recovered soon after Redis is back (the default would wait 30 s).
    const env = { JOBSCOPE_LOCK_DURATION: '3s' };
    const proc = await cluster.spawn('start', { env });
    let rescuer: JobscopeProcess | undefined;
    try {
      // One run still active at the deadline, one that finishes during the outage (its outcome cannot be recorded).
      const runId = String((await cluster.trigger(proc, 'slow', { ms: 60_000 })).body.runId);
      const shortId = String((await cluster.trigger(proc, 'slow', { ms: 1500 })).body.runId);
      for (const id of [runId, shortId]) await proc.waitForLog(new RegExp(`"run":"${id}".*"msg":"run started"`), 10_000);
      // "run started" comes before the run's token is registered, and a handler starts only once it is: Redis stops after
      // both tokens are live, or the short run would wait for Redis (its handler never started) instead of finishing
      // during the outage (seen once on a loaded CI machine, with Redis stopped 12 ms after the line).
      await waitFor(async () => (await cluster.liveTokenKeys()).length === 2, 10_000, 'both runs’ tokens to be live');

      const mark = proc.lines.length;
      await cluster.redis.stop();
      await waitFor(() => proc.lines.slice(mark).some(isLost), 5000, 'the "Redis connection lost" line');
      await proc.waitForLog(new RegExp(`"run":"${shortId}".*"msg":"run completed"`), 5000);
      const signalled = Date.now();
      proc.signal('SIGTERM');
      await proc.waitExit(EXIT_BOUND_MS + 5000);
      const tookMs = Date.now() - signalled;
      t.diagnostic(`SIGTERM -> exit: ${tookMs} ms (JOBSCOPE_SHUTDOWN_TIMEOUT ${SHUTDOWN_TIMEOUT_MS} ms)`);
      assert.ok(tookMs <= EXIT_BOUND_MS, `exited ${tookMs} ms after SIGTERM (bound ${EXIT_BOUND_MS} ms)\n${proc.tail(20)}`);
      const named = proc.lines.filter((l) => /could not hand back/.test(msg(l)));
      assert.equal(named.length, 1, proc.tail(20));
      assert.deepEqual(named[0].json?.runs, [runId]);
      assert.deepEqual(named[0].json?.unrecorded, [shortId]);
      assert.deepEqual(notJson(proc.lines), [], `lines that are not JSON:\n${proc.tail(30)}`);

      // Nothing lost: once Redis is back, the run's lock expires and another process takes it over.
      await cluster.restartRedis();
      rescuer = await cluster.spawn('start', { env: { ...env, QUICK: '1' } });
      for (const id of [runId, shortId]) {
        const report = await cluster.finished(rescuer, id, 30_000);
        assert.equal(report.state, 'completed', JSON.stringify(report));
        assert.equal(report.result.pid, rescuer.pid, `${id} completed by the process that recovered it`);
      }
      assert.ok(rescuer.logs(/recovered a stalled run/).length >= 2, rescuer.tail(20));
    } finally {
      await proc.kill().catch(() => undefined);
      await rescuer?.stop();
    }
  });
});

describe('Redis refusing a connection for a reason', () => {
  test('a wrong password is logged once with its reason: at start-up (exits at once) and when Redis comes back with one', async () => {
    const own = await startRedis(['--requirepass', 'right-password']);
    const port = own.port;
    let proc: JobscopeProcess | undefined;
    try {
      // At start-up: refused, said once, exit without waiting for a Redis that will not change its mind.
      const wrong = new JobscopeProcess(
        'wrong-password',
        'start',
        ['start'],
        cluster.processEnv({ REDIS_URL: `redis://:wrong-password@127.0.0.1:${port}` }),
        cluster.tmp,
      );
      const started = Date.now();
      const { code } = await wrong.waitExit(15_000);
      assert.equal(code, 1);
      assert.ok(Date.now() - started < 8000, `took ${Date.now() - started} ms to give up on a refused login`);
      const refused = wrong.lines.filter((l) => l.json && /refused the login/.test(msg(l)));
      assert.equal(refused.length, 1, wrong.tail(20));
      assert.match(String(refused[0].json?.err), /WRONGPASS|invalid username-password/);
      assert.doesNotMatch(wrong.stderr, /right-password|wrong-password/, 'no password in the output');

      // Running, then Redis comes back with a password this process does not have: logged once, with the reason, and
      // /readyz says so; not a line per connection per reconnect.
      own.args = [];
      await own.stop();
      await own.start();
      proc = await cluster.spawn('start', { env: { REDIS_URL: own.url, JOBSCOPE_PREFIX: 'outage-auth' } });
      const mark = proc.lines.length;
      await own.stop();
      own.args = ['--requirepass', 'right-password'];
      await own.start();
      const p = proc;
      await waitFor(() => p.lines.slice(mark).some((l) => /refused the login/.test(msg(l))), 10_000, 'the refusal line');
      await sleep(2 * INTERVAL_MS);
      const window = proc.lines.slice(mark);
      // Once as a refusal; the "still unreachable" lines then give it as the reason.
      assert.equal(window.filter((l) => l.json?.redis === 'refused').length, 1, proc.tail(30));
      assert.deepEqual(notJson(window), [], proc.tail(30));
      assert.ok(window.length <= 8, `${window.length} lines:\n${proc.tail(30)}`);
      const ready = await readyz(proc);
      assert.equal(ready.status, 503);
      assert.match(String(ready.body.reason), /refused the login/);
    } finally {
      await proc?.kill().catch(() => undefined);
      await own.destroy();
    }
  });
});
