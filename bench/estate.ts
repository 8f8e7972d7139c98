// The estate (issue 15): what ONE idle `jobscope worker` process costs with 1,000 (and 2,000) job files, how fast a run
// starts in such an estate next to a 1-job one, and how long a run held by a worker killed with `kill -9` takes to start
// on another worker. Real worker processes (the built bin, through test/helpers/cluster.ts), a private redis-server each.
//   node --import tsx bench/estate.ts [--quick] [--files 1000] [--files2 2000] [--window 31] [--samples 100] [--trials 3]
// Logs progress on stderr; prints as its LAST stdout line one JSON object with the keys. `npm run bench` runs it.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { createClient } from '../src/client.ts';
import { Cluster, waitFor, type JobscopeProcess } from '../test/helpers/cluster.ts';
import { monitorRedis } from '../test/helpers/redis.ts';
import { median, percentile, sleep } from './lib.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    files: { type: 'string' },
    files2: { type: 'string' },
    window: { type: 'string' },
    samples: { type: 'string' },
    trials: { type: 'string' },
  },
});
const QUICK = values.quick;
const FILES = Number(values.files ?? 1000);
const FILES2 = Number(values.files2 ?? 2000);
/** Idle counting window, seconds: longer than the 30 s stalled-check period (every periodic timer fires in it). */
const WINDOW_S = Number(values.window ?? (QUICK ? 20 : 31));
const SAMPLES = Number(values.samples ?? (QUICK ? 40 : 100));
const WARM = 10;
const TRIALS = Number(values.trials ?? (QUICK ? 1 : 3));
/** How long one crash trial may wait for the run to start again elsewhere. */
const RECOVERY_LIMIT_MS = 150_000;

const log = (line: string) => process.stderr.write(`[estate] ${line}\n`);
/** Wall clock with sub-millisecond resolution, comparable across processes on one machine. */
const now = () => performance.timeOrigin + performance.now();

/**
 * `jobN.ts`: tells the bench (one stdout line) when its handler started, with the same clock as `now()`. `hold.ts`: the
 * same, then holds its run until cancelled (the run a crash trial kills its worker under).
 */
const START_LINE = `process.stdout.write(JSON.stringify({ estateStart: ctx.run.id, at: performance.timeOrigin + performance.now(), pid: process.pid }) + '\\n');`;
function estateFiles(n: number): Record<string, string> {
  const files: Record<string, string> = {};
  // n files in all: job0 .. job<n-2> and hold (a 1-file estate is job0 alone).
  if (n === 1) return { 'job0.ts': `export default { token: { audience: ['rec'] }, async run(ctx) { ${START_LINE} return 0; } };\n` };
  for (let i = 0; i < n - 1; i++)
    files[`job${i}.ts`] = `export default { token: { audience: ['rec'] }, async run(ctx) { ${START_LINE} return ${i}; } };\n`;
  files['hold.ts'] = `export default {
  token: { audience: ['rec'] },
  async run(ctx) {
    ${START_LINE}
    await new Promise((resolve) => { const t = setTimeout(resolve, 600_000); ctx.signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true }); });
  },
};
`;
  return files;
}

interface StartLine {
  estateStart: string;
  at: number;
  pid: number;
}
/** The handler-start lines a worker printed so far. */
function starts(proc: JobscopeProcess): StartLine[] {
  const out: StartLine[] = [];
  for (const line of proc.stdout.split('\n')) {
    if (!line.startsWith('{"estateStart"')) continue;
    try {
      out.push(JSON.parse(line) as StartLine);
    } catch {
      // a line still being written
    }
  }
  return out;
}
function startOf(procs: JobscopeProcess[], runId: string, exceptPid?: number): StartLine | undefined {
  for (const p of procs) {
    const s = starts(p).find((x) => x.estateStart === runId && x.pid !== exceptPid);
    if (s) return s;
  }
  return undefined;
}

interface ClientRow {
  id: string;
  addr: string;
}
async function clients(admin: Redis): Promise<ClientRow[]> {
  const text = String(await admin.client('LIST'));
  return text
    .trim()
    .split('\n')
    .map((line) => ({ id: /(?:^| )id=(\d+)/.exec(line)?.[1] ?? '', addr: /(?:^| )addr=(\S+)/.exec(line)?.[1] ?? '' }));
}

/** Total `calls` of INFO commandstats, and the calls per command. */
async function commandStats(admin: Redis): Promise<Map<string, number>> {
  const info = await admin.info('commandstats');
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1], Number(m[2]));
  return out;
}

function rssMb(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  return kb / 1024;
}

/** Starts one `jobscope worker`: its start-up time (spawn to "workers started") and the Redis connections it added. */
async function spawnWorker(cluster: Cluster, admin: Redis, name: string) {
  const before = new Set((await clients(admin)).map((c) => c.id));
  const t0 = Date.now();
  const proc = await cluster.spawn('worker', { name });
  const ready = proc.lines.find((l) => /"msg":"workers started"/.test(l.text))!.receivedAt;
  // Let start-up traffic settle (connections still being opened, first stalled checks).
  await sleep(2000);
  const mine = (await clients(admin)).filter((c) => !before.has(c.id));
  return { proc, startupMs: ready - t0, connections: mine.length, addrs: new Set(mine.map((c) => c.addr)) };
}

/**
 * Commands one process sends while idle, per second. MONITOR shows each command as Redis runs it, with the client's
 * address, or `lua` for a command a script runs: counting the process's own addresses counts a script call (EVALSHA,
 * EVAL, FCALL) as one and none of its inner commands. INFO commandstats over the same window counts the inner commands
 * too (and the bench's own INFO): reported beside it.
 */
async function idleCommands(admin: Redis, redisUrl: string, addrs: Set<string>, windowS: number) {
  let sent = 0;
  let scripts = 0;
  const byCommand: Record<string, number> = {};
  const monitor = await monitorRedis(redisUrl, (args, source) => {
    if (!addrs.has(source)) return;
    sent++;
    const cmd = String(args[0]).toLowerCase();
    byCommand[cmd] = (byCommand[cmd] ?? 0) + 1;
    if (cmd === 'evalsha' || cmd === 'eval' || cmd === 'fcall' || cmd === 'evalsha_ro' || cmd === 'eval_ro') scripts++;
  });
  const stats0 = await commandStats(admin);
  await sleep(windowS * 1000);
  const stats1 = await commandStats(admin);
  monitor.close();
  let all = 0;
  for (const [cmd, calls] of stats1) all += calls - (stats0.get(cmd) ?? 0);
  // The bench's own second INFO and the MONITOR command are in the INFO delta.
  all -= 2;
  return {
    perS: sent / windowS,
    scriptsPerS: scripts / windowS,
    withInnerPerS: all / windowS,
    top: Object.entries(byCommand)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([c, n]) => `${c} ${(n / windowS).toFixed(1)}/s`)
      .join(', '),
  };
}

/** Trigger-to-handler-start of `samples` runs, one at a time, of jobs picked across the estate (ms). */
async function latency(cluster: Cluster, workers: JobscopeProcess[], jobs: string[], samples: number): Promise<number[]> {
  const client = createClient({ redisUrl: cluster.redis.url, prefix: cluster.prefix });
  const out: number[] = [];
  try {
    for (let i = 0; i < samples + WARM; i++) {
      // A stride through the estate: consecutive samples hit different jobs (most of them idle until then).
      const job = jobs[(i * 7919) % jobs.length];
      const t0 = now();
      const { runId } = await client.trigger(job, {});
      const s = await waitFor(() => startOf(workers, runId), 10_000, `run ${runId} to start`, 2);
      if (i >= WARM) out.push(s.at - t0);
      await sleep(20);
    }
  } finally {
    await client.close();
  }
  return out;
}

/**
 * `kill -9` on the worker running a `hold` run; seconds from the kill until the run's handler starts on another worker.
 * Two workers serve the estate; the killed one is replaced before the next trial.
 */
async function crashTrials(cluster: Cluster, admin: Redis, workers: JobscopeProcess[], trials: number): Promise<number[]> {
  const client = createClient({ redisUrl: cluster.redis.url, prefix: cluster.prefix });
  const out: number[] = [];
  try {
    for (let t = 0; t < trials; t++) {
      while (workers.filter((w) => w.running).length < 2)
        workers.push((await spawnWorker(cluster, admin, `crash-${t}-${workers.length}`)).proc);
      const live = workers.filter((w) => w.running);
      const { runId } = await client.trigger('hold', {});
      const first = await waitFor(() => startOf(live, runId), 20_000, `run ${runId} to start`, 5);
      // Mid-run: let the run be well under way (its lock renewed at least once is not needed: a fresh lock is the worst case).
      await sleep(500);
      const victim = live.find((w) => w.pid === first.pid)!;
      const killedAt = now();
      victim.child.kill('SIGKILL');
      await victim.waitExit(5000);
      const again = await waitFor(
        () => startOf(live, runId, first.pid),
        RECOVERY_LIMIT_MS,
        `run ${runId} to start again after kill -9`,
        20,
      );
      out.push((again.at - killedAt) / 1000);
      log(`crash trial ${t + 1}: run started again on pid ${again.pid} ${((again.at - killedAt) / 1000).toFixed(1)} s after the kill`);
      await client.cancel(runId, 'bench trial over');
    }
  } finally {
    await client.close();
  }
  return out;
}

async function withEstate<T>(prefix: string, files: number, fn: (cluster: Cluster, admin: Redis) => Promise<T>): Promise<T> {
  const t0 = Date.now();
  // A server process would sync schedules and hold the dashboard: not needed (no schedules), so workers only.
  const cluster = await Cluster.start({ prefix, jobs: estateFiles(files), redisArgs: ['--maxclients', '10000'] });
  const admin = new Redis(cluster.redis.url);
  log(`${files} job files written, redis on ${cluster.redis.url} (${Date.now() - t0} ms)`);
  try {
    return await fn(cluster, admin);
  } finally {
    admin.disconnect();
    await cluster.close();
  }
}

const started = Date.now();
const round = (x: number, d = 1) => Number(x.toFixed(d));

// 1,000 jobs: one idle worker (connections, start-up, idle commands, RSS), latency, then crash trials with two workers.
const big = await withEstate('estate', FILES, async (cluster, admin) => {
  const w = await spawnWorker(cluster, admin, 'idle');
  log(`${FILES} jobs: worker ready in ${w.startupMs} ms, ${w.connections} connections; counting idle commands for ${WINDOW_S} s`);
  const idle = await idleCommands(admin, cluster.redis.url, w.addrs, WINDOW_S);
  const rss = rssMb(w.proc.pid);
  log(
    `${FILES} jobs idle: ${idle.perS.toFixed(1)} commands/s (scripts as one; ${idle.scriptsPerS.toFixed(1)}/s of them script calls), ` +
      `${idle.withInnerPerS.toFixed(1)}/s with the scripts' inner commands; top: ${idle.top}; RSS ${rss.toFixed(0)} MB`,
  );
  const jobs = Array.from({ length: FILES - 1 }, (_, i) => `job${i}`);
  const lat = await latency(cluster, [w.proc], jobs, SAMPLES);
  log(`${FILES} jobs: trigger-to-start p50 ${percentile(lat, 50).toFixed(2)} ms, p95 ${percentile(lat, 95).toFixed(2)} ms`);
  const crash = await crashTrials(cluster, admin, [w.proc], TRIALS);
  return { ...w, idle, rss, lat, crash };
});

// 1 job: the same latency measure alone.
const one = await withEstate('estate1', 1, async (cluster, admin) => {
  const w = await spawnWorker(cluster, admin, 'one');
  const lat = await latency(cluster, [w.proc], ['job0'], SAMPLES);
  log(`1 job: trigger-to-start p50 ${percentile(lat, 50).toFixed(2)} ms, p95 ${percentile(lat, 95).toFixed(2)} ms`);
  return { lat, connections: w.connections };
});

// 2,000 jobs: connections (and start-up, RSS) of one idle worker.
const big2 = await withEstate('estate2', FILES2, async (cluster, admin) => {
  const w = await spawnWorker(cluster, admin, 'idle2');
  const rss = rssMb(w.proc.pid);
  log(`${FILES2} jobs: worker ready in ${w.startupMs} ms, ${w.connections} connections, RSS ${rss.toFixed(0)} MB`);
  return { ...w, rss };
});

const json = {
  redis_connections_1000_jobs: big.connections,
  redis_connections_2000_jobs: big2.connections,
  idle_redis_cmds_per_s_1000_jobs: round(big.idle.perS),
  idle_redis_cmds_per_s_1000_jobs_with_lua_inner: round(big.idle.withInnerPerS),
  startup_ms_1000_jobs: big.startupMs,
  rss_mb_1000_jobs: Math.round(big.rss),
  latency_p50_ms_1000_jobs: round(percentile(big.lat, 50), 2),
  latency_p50_ms_1_job: round(percentile(one.lat, 50), 2),
  crash_recovery_s: round(median(big.crash)),
  crash_recovery_trials_s: big.crash.map((x) => round(x)),
  redis_connections_1_job: one.connections,
  startup_ms_2000_jobs: big2.startupMs,
  rss_mb_2000_jobs: Math.round(big2.rss),
  estate_files: [FILES, FILES2],
  estate_seconds: Math.round((Date.now() - started) / 1000),
};
console.log(JSON.stringify(json));
process.exit(0);
