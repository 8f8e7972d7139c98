// Promises that only a fault in the middle of a run can test, each with real `jobscope` processes on one private
// redis-server (test/helpers/cluster.ts), and each checked to fail when the code that keeps it is taken out:
// - a parent run whose completion is repeated (its worker froze after the handler returned, another worker completed the
//   run again, then the first one woke and finished too) starts each `then` step once: the key startThen gives each step;
// - a worker frozen past its lock that wakes up cannot register a new token for the run another worker now holds: the
//   lock check of the token store's registration script.
// Where the freeze must fall at one exact point, the job's own code stops its process there (a real SIGSTOP of the whole
// process, like `kill -STOP`), the first time only (a marker file says which execution was first); the test sends SIGCONT
// once the other worker has done its part.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { RUN_FIELDS } from '../src/run/redis-keys.ts';
import { Cluster, Timeline, waitFor, type JobscopeProcess } from './helpers/cluster.ts';

/** A `then` parent: its step 1's data mapping freezes the first process that gets there (after step 0 was started). */
const THEN_PARENT = `import { writeFileSync } from 'node:fs';
import { post } from './_timeline.ts';
export default {
  token: { audience: ['rec'] },
  then: [
    'then-step0',
    {
      job: 'then-step1',
      data(result) {
        let first = false;
        try {
          writeFileSync(result.marker, String(process.pid), { flag: 'wx' });
          first = true;
        } catch {}
        // Step 0 is started and the run is not completed yet: this process stops here until the test sends SIGCONT.
        if (first) process.kill(process.pid, 'SIGSTOP');
        return { from: result.ran };
      },
    },
  ],
  async run(ctx) {
    await post(ctx, 'start');
    return { ran: ctx.run.id, marker: ctx.data.marker, pid: process.pid };
  },
};
`;

const THEN_STEP = `import { post } from './_timeline.ts';
export default {
  token: { audience: ['rec'] },
  async run(ctx) {
    await post(ctx, 'start');
    await post(ctx, 'end');
    return { pid: process.pid };
  },
};
`;

/**
 * Two audiences: 'rec' from the start, 'rec2' minted on its first use. The first execution freezes its process (SIGSTOP);
 * woken, its first call to rec2 mints a new token, and it writes what happened to `<marker>.woke`. Later executions run 4 s
 * and complete without calling rec2, so a rec2 token in the run's history can only be the woken execution's.
 */
const MINT_AFTER_WAKE = `import { writeFileSync } from 'node:fs';
import { post, sleep } from './_timeline.ts';
export default {
  token: { audience: ['rec', 'rec2'] },
  async run(ctx) {
    await post(ctx, 'start');
    let first = false;
    try {
      writeFileSync(ctx.data.marker, String(process.pid), { flag: 'wx' });
      first = true;
    } catch {}
    if (!first) {
      await sleep(ctx, 4000);
      await post(ctx, 'end');
      return { pid: process.pid };
    }
    process.kill(process.pid, 'SIGSTOP');
    // Awake (the test sent SIGCONT once another worker had taken the run): the first call to rec2 mints a new token.
    let outcome;
    let error;
    try {
      await ctx.service('rec2').post('start', {
        json: { run: ctx.run.id, attempt: ctx.run.attempt, trigger: ctx.run.trigger, pid: process.pid },
      }).json();
      outcome = { minted: true };
    } catch (err) {
      error = err;
      outcome = {
        minted: false,
        name: err?.name,
        code: err?.code,
        message: String(err?.message),
        cause: err?.cause ? { name: err.cause.name, code: err.cause.code, message: String(err.cause.message) } : null,
      };
    }
    writeFileSync(ctx.data.marker + '.woke', JSON.stringify(outcome));
    // End the way a lost lock ends: with the abort the worker sends (or the lock error itself), never as a failure.
    await new Promise((resolve) => {
      if (ctx.signal.aborted) return resolve();
      const t = setTimeout(resolve, 15000);
      ctx.signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
    throw ctx.signal.aborted ? ctx.signal.reason : (error?.cause ?? error ?? new Error('woken execution'));
  },
};
`;

let cluster: Cluster;
let server: JobscopeProcess;
/** The second service ('rec2'), verifying tokens for that audience with the same verifier as the first. */
let rec2: Timeline;

before(async () => {
  cluster = await Cluster.start({
    prefix: 'gd',
    jobs: {
      'then-parent.ts': THEN_PARENT,
      'then-step0.ts': THEN_STEP,
      'then-step1.ts': THEN_STEP,
      'mint-after-wake.ts': MINT_AFTER_WAKE,
    },
  });
  rec2 = await new Timeline({
    audience: 'rec2',
    publicKey: cluster.publicKeyPem,
    redis: cluster.redis.url,
    prefix: cluster.prefix,
  }).start();
  server = await cluster.spawn('server');
});

after(async () => {
  for (const p of cluster?.processes ?? []) p.signal('SIGCONT');
  await rec2?.stop();
  await cluster?.close();
});

/** Is the process stopped (SIGSTOP)? Linux: the state letter of /proc/<pid>/stat. */
function isStopped(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^T$/.test(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]);
  } catch {
    return false;
  }
}

/** Workers serving only `jobs`. */
function workers(jobs: string, n: number, env: Record<string, string> = {}): Promise<JobscopeProcess[]> {
  return Promise.all(
    Array.from({ length: n }, (_, i) => cluster.spawn('worker', { env, args: ['--only', jobs], name: `${jobs}-w${i + 1}` })),
  );
}

/** The runs Redis keeps of a job (GET /api/jobs/:name/runs). */
async function runsOf(job: string): Promise<{ runId: string; state: string }[]> {
  const res = await cluster.api(server, `/api/jobs/${job}/runs?limit=100`);
  assert.equal(res.status, 200, res.text);
  return res.body as { runId: string; state: string }[];
}

describe('a repeated completion', () => {
  test("a parent run completed twice (its worker froze after the handler, another re-ran it) starts each 'then' step once", async () => {
    const lock = { JOBSCOPE_LOCK_DURATION: '2s' };
    const parents = await workers('then-parent', 2, lock);
    const [steps] = await workers('then-step0,then-step1', 1);
    const marker = path.join(cluster.tmp, 'then-froze');
    let frozen: JobscopeProcess | undefined;
    try {
      const res = await cluster.trigger(server, 'then-parent', { marker });
      assert.equal(res.status, 202, res.text);
      const runId = String(res.body.runId);
      const show = () => `${cluster.timeline.describe()}\n${cluster.tails()}`;

      // The first execution started step 0 and stopped its process inside step 1's mapping, before completing.
      const pid = await waitFor(() => existsSync(marker) && Number(readFileSync(marker, 'utf8')), 20_000, 'the marker').catch(
        (err: Error) => assert.fail(`${err.message}\n${show()}`),
      );
      const a = parents.find((p) => p.pid === pid);
      assert.ok(a, `the marker names pid ${pid}, not a parent worker`);
      frozen = a;
      const b = parents.find((p) => p !== a)!;
      await waitFor(() => isStopped(a.pid), 10_000, `${a.name} to be stopped`);
      assert.equal((await runsOf('then-step0')).length, 1, `step 0 was not started before the freeze:\n${show()}`);

      // Its lock expires; the other worker takes the run, runs the handler again and completes it (its own then-steps).
      const report = await cluster.finished(server, runId, 30_000).catch((err: Error) => assert.fail(`${err.message}\n${show()}`));
      assert.equal(report.outcome, 'completed', JSON.stringify(report));
      assert.equal((report.result as { pid: number }).pid, b.pid, `the run was not completed by the other worker:\n${show()}`);

      // The frozen worker wakes and finishes its own execution of the run: its then-steps, then a refused completion.
      a.signal('SIGCONT');
      frozen = undefined;
      await a.waitForLog(/its lock was lost|lost its lock/, 20_000);

      // Every step run that exists now has been triggered (each trigger came before the completion A tried).
      const [step0, step1] = await Promise.all([runsOf('then-step0'), runsOf('then-step1')]);
      for (const r of [...step0, ...step1]) await cluster.finished(server, r.runId, 20_000);
      await cluster.timeline.settled();
      const parentStarts = cluster.timeline.of({ run: runId, kind: 'start' });
      assert.deepEqual(
        parentStarts.map((s) => s.pid),
        [a.pid, b.pid],
        `the parent's handler did not run twice (A then B): the completion was not repeated\n${show()}`,
      );
      assert.deepEqual(
        step0.map((r) => r.runId),
        [step0[0]?.runId],
        `step 0 was started more than once:\n${JSON.stringify(step0)}\n${show()}`,
      );
      assert.deepEqual(
        step1.map((r) => r.runId),
        [step1[0]?.runId],
        `step 1 was started more than once:\n${JSON.stringify(step1)}\n${show()}`,
      );
      for (const job of ['then-step0', 'then-step1']) {
        const starts = cluster.timeline.of({ kind: 'start' }).filter((e) => e.run.startsWith(`${job}:`));
        assert.equal(starts.length, 1, `${job} ran ${starts.length} times:\n${show()}`);
      }
      assert.equal((await cluster.finished(server, runId, 5000)).outcome, 'completed');
    } finally {
      frozen?.signal('SIGCONT');
      await Promise.all([...parents, steps].map((w) => w.kill()));
    }
  });
});

describe('a worker frozen past its lock wakes up', () => {
  test('its first call to a new service cannot register a token (LockLostError); the run completes once elsewhere', async (t) => {
    const env = { JOBSCOPE_LOCK_DURATION: '2s', JOBSCOPE_SERVICES: `rec=${cluster.timeline.url},rec2=${rec2.url}` };
    const pair = await workers('mint-after-wake', 2, env);
    const marker = path.join(cluster.tmp, 'mint-froze');
    let frozen: JobscopeProcess | undefined;
    try {
      const res = await cluster.trigger(server, 'mint-after-wake', { marker });
      assert.equal(res.status, 202, res.text);
      const runId = String(res.body.runId);
      const show = () => `${cluster.timeline.describe((e) => e.run === runId)}\n${cluster.tails()}`;

      const pid = await waitFor(() => existsSync(marker) && Number(readFileSync(marker, 'utf8')), 20_000, 'the marker').catch(
        (err: Error) => assert.fail(`${err.message}\n${show()}`),
      );
      const a = pair.find((p) => p.pid === pid);
      assert.ok(a, `the marker names pid ${pid}, not a worker`);
      frozen = a;
      const b = pair.find((p) => p !== a)!;
      await waitFor(() => isStopped(a.pid), 10_000, `${a.name} to be stopped`);

      // B takes the run over once A's lock has expired; A wakes while B's execution holds the run.
      await waitFor(() => cluster.timeline.of({ run: runId, kind: 'start', pid: b.pid })[0], 20_000, 'B to take the run').catch(
        (err: Error) => assert.fail(`${err.message}\n${show()}`),
      );
      a.signal('SIGCONT');
      frozen = undefined;

      const woke = await waitFor(
        () => (existsSync(`${marker}.woke`) ? readFileSync(`${marker}.woke`, 'utf8') : undefined),
        15_000,
        'A to wake',
      ).catch((err: Error) => assert.fail(`${err.message}\n${show()}`));
      // Right away, before A's execution is torn down: the rec2 token was never registered (not in the run's history of
      // tokens, not live), and the call that would have minted it failed with the lock error.
      const [live, history] = await Promise.all([liveTokens(), claimsHistory(runId)]);
      assert.deepEqual(
        history.filter((c) => c.aud.includes('rec2')),
        [],
        `a rec2 token was registered for the run after its lock was lost:\n${JSON.stringify(history)}\nwoken execution: ${woke}`,
      );
      assert.deepEqual(
        live.filter((t) => t.run === runId && t.aud.includes('rec2')),
        [],
        `a rec2 token of the run is live:\n${JSON.stringify(live)}`,
      );
      const outcome = JSON.parse(woke) as { minted: boolean; code?: string; cause?: { name?: string; message?: string } | null };
      assert.equal(outcome.minted, false, `the woken execution minted a token and called rec2:\n${woke}\n${show()}`);
      // Two guards race on waking, and either stops the token: the registration script refuses it (the mint reached Redis
      // first: ERR_LOCK_LOST) or BullMQ's lock renewal, due at once after the freeze, was refused first and aborted the
      // execution before it minted (ERR_ABORTED). The first is what the lock check in the token store decides; it is the
      // common order (the mint is sent in the handler's first turn) and the one the mutation check of this test saw.
      assert.ok(['ERR_LOCK_LOST', 'ERR_ABORTED'].includes(String(outcome.code)), woke);
      if (outcome.code === 'ERR_LOCK_LOST') {
        assert.equal(outcome.cause?.name, 'LockLostError', woke);
        assert.match(String(outcome.cause?.message), /lost its lock/, woke);
      }
      t.diagnostic(`the woken call ended with ${outcome.code}`);

      const report = await cluster.finished(server, runId, 30_000).catch((err: Error) => assert.fail(`${err.message}\n${show()}`));
      await a.waitForLog(/run lost its lock/, 15_000);
      await cluster.timeline.settled();
      await rec2.settled();
      assert.equal(report.outcome, 'completed', `${JSON.stringify(report)}\n${show()}`);
      assert.deepEqual(
        cluster.timeline.of({ run: runId, kind: 'end' }).map((e) => [e.pid, e.accepted]),
        [[b.pid, true]],
        `the run did not complete once, on B:\n${show()}`,
      );
      // Never registered since either (A's execution is over), and rec2 never heard from the run.
      const historyAfter = await claimsHistory(runId);
      assert.deepEqual(
        historyAfter.filter((c) => c.aud.includes('rec2')),
        [],
        `a rec2 token was registered for the run:\n${JSON.stringify(historyAfter)}`,
      );
      assert.ok(historyAfter.length >= 2, `the history should hold A's and B's rec tokens:\n${JSON.stringify(historyAfter)}`);
      assert.deepEqual(rec2.events, [], rec2.describe());
      assert.deepEqual(await cluster.liveTokenKeys(), []);
    } finally {
      frozen?.signal('SIGCONT');
      await Promise.all(pair.map((w) => w.kill()));
    }
  });
});

/** Live tokens' metadata, read from their keys (`<prefix>:token:<jti>`) over a fresh connection. */
async function liveTokens(): Promise<{ jti: string; run: string; att: number; aud: string[] }[]> {
  const client = new Redis(cluster.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    const keys = await client.keys(`${cluster.prefix}:token:*`);
    const values = keys.length ? await client.mget(...keys) : [];
    return keys.flatMap((key, i) =>
      values[i]
        ? [{ jti: key.slice(`${cluster.prefix}:token:`.length), ...(JSON.parse(values[i]) as { run: string; att: number; aud: string[] }) }]
        : [],
    );
  } finally {
    client.disconnect();
  }
}

/** The claims of every token registered for the run (its BullMQ hash's history field). */
async function claimsHistory(runId: string): Promise<{ jti: string; aud: string[]; att: number }[]> {
  const client = new Redis(cluster.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    const field = await client.hget(`${cluster.prefix}:${runId}`, RUN_FIELDS.claims);
    return (field ?? '')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { jti: string; aud: string[]; att: number });
  } finally {
    client.disconnect();
  }
}
