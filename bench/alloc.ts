// Bytes allocated per run on the worker's main thread, by variant, at one concurrency: each variant is measured twice
// (`bench/variant.ts throughput` with --trace-gc, at two job counts), and the difference of the two totals over the
// difference of the job counts leaves start-up and warm-up out. The total is what each garbage collection found allocated
// since the previous one left the heap (V8's `--trace-gc` lines: "Scavenge 12.3 (...) -> 10.1 (...) MB"), the main
// isolate's only (the signing thread has its own).
//   node --import tsx bench/alloc.ts [--concurrency 50] [--jobs 10000,40000] [--variants raw,naive,jobscope-es256]
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { startRedis } from '../test/helpers/redis.ts';

const { values } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '50' },
    jobs: { type: 'string', default: '10000,40000' },
    variants: { type: 'string', default: 'raw,naive,jobscope-es256,jobscope-hs256' },
    node: { type: 'string', default: process.execPath },
  },
});
const [small, large] = values.jobs.split(',').map(Number);

/** MB found allocated by the main isolate's collections over the whole process, and the measured rate line. */
function allocatedMb(trace: string): number {
  const lines = [
    ...trace.matchAll(/^\[\d+:(0x[0-9a-f]+)\]\s+[\d.]+ ms: \w[\w-]*(?: \(\w+\))? ([\d.]+) \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB/gm),
  ];
  const byIsolate = new Map<string, RegExpMatchArray[]>();
  for (const m of lines) byIsolate.set(m[1], [...(byIsolate.get(m[1]) ?? []), m]);
  const main = [...byIsolate.values()].sort((a, b) => b.length - a.length)[0] ?? [];
  let total = 0;
  let after = 0;
  for (const m of main) {
    total += Math.max(0, Number(m[2]) - after);
    after = Number(m[3]);
  }
  return total;
}

function measure(redisUrl: string, variant: string, jobs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const args = ['--trace-gc', '--import', 'tsx', 'bench/variant.ts', 'throughput', variant, '--redis', redisUrl];
    const child = spawn(values.node, [...args, '--jobs', String(jobs), '--warmup', '2000', '--concurrency', values.concurrency], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => (code === 0 ? resolve(allocatedMb(out)) : reject(new Error(`${variant} ${jobs}: exit ${code}`))));
  });
}

const redis = await startRedis();
try {
  const out: Record<string, number> = {};
  for (const variant of values.variants.split(',')) {
    const a = await measure(redis.url, variant, small);
    const b = await measure(redis.url, variant, large);
    out[variant] = Math.round(((b - a) * 2 ** 20) / (large - small));
    console.error(`${variant}: ${out[variant]} bytes per run (c=${values.concurrency})`);
  }
  console.log(JSON.stringify({ node: process.version, concurrency: Number(values.concurrency), bytesPerRun: out }));
} finally {
  await redis.stop();
}
