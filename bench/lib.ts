// Shared by the benchmark's orchestrator (throughput.ts) and its measurement processes (variant.ts, peers.ts).
import { spawn } from 'node:child_process';
import type { Redis } from 'ioredis';

/** What one measurement process prints as its last stdout line. */
export interface Measured {
  /** Jobs per second. */
  rate?: number;
  /** CPU time of the measuring process per job, microseconds. */
  cpuUs?: number;
  /** CPU time of redis-server (or PostgreSQL) per job, microseconds. */
  storeCpuUs?: number;
  /** Samples in milliseconds (latency, drift). */
  samples?: number[];
  [key: string]: unknown;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Nearest-rank percentile. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** redis-server's own CPU seconds (user + sys) from INFO cpu. */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const get = (k: string) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  return get('used_cpu_user') + get('used_cpu_sys');
}

/** Runs `node [args]` and resolves with its last stdout line parsed as JSON; stderr is passed through on failure. */
export function runNode(
  node: string,
  args: string[],
  opts: { timeoutMs: number; env?: NodeJS.ProcessEnv; onLine?: (line: string) => void },
): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const child = spawn(node, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      const before = out.length;
      out += d.toString();
      if (opts.onLine)
        for (const line of out
          .slice(out.lastIndexOf('\n', before - 1) + 1)
          .split('\n')
          .slice(0, -1))
          opts.onLine(line);
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      try {
        if (code !== 0) throw new Error(`exit ${code ?? signal}`);
        resolve(JSON.parse(last) as Measured);
      } catch (e) {
        reject(new Error(`${args.slice(-12).join(' ')}: ${(e as Error).message}\n${err.slice(-3000)}\n${out.slice(-1000)}`));
      }
    });
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
