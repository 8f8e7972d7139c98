// Builds the pieces of jobscope from plain arguments for tests: a temporary jobs folder, a Runtime, captured logs.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config.ts';
import { loadRegistry } from '../../src/jobs/registry.ts';
import { createLogger } from '../../src/log.ts';
import { Runtime } from '../../src/runtime/runtime.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TMP = path.join(ROOT, '.jobscope', 'test-tmp');

/**
 * Writes job files into a fresh folder inside the repository (so `import { defineJob } from 'jobscope'` resolves
 * through the package's self-reference) and returns its path.
 */
export function jobsDir(files: Record<string, string>): string {
  mkdirSync(TMP, { recursive: true });
  const dir = mkdtempSync(path.join(TMP, 'jobs-'));
  for (const [name, source] of Object.entries(files)) writeFileSync(path.join(dir, name), source);
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Captured JSON log lines (after token masking, exactly what would reach stdout). */
export class LogCapture {
  lines: string[] = [];
  write(line: string): void {
    this.lines.push(line);
  }
  get text(): string {
    return this.lines.join('');
  }
}

export interface TestRuntimeOptions {
  redisUrl: string;
  jobsDir: string;
  env?: Record<string, string>;
}

/**
 * A Runtime configured only from the given values (never the process environment), with its logs captured. Test files build
 * theirs through helpers/fixture.ts (Redis, jobs folder, Runtime, server and client in one call), which uses this.
 */
export async function testRuntime(opts: TestRuntimeOptions): Promise<{ runtime: Runtime; logs: LogCapture }> {
  const config = loadConfig({
    REDIS_URL: opts.redisUrl,
    JOBSCOPE_JOBS: opts.jobsDir,
    JOBSCOPE_STATE_DIR: path.join(TMP, 'state'),
    LOG_LEVEL: 'trace',
    JOBSCOPE_SHUTDOWN_TIMEOUT: '5s',
    // Handlers that ignore their signal are part of the tests: keep their slot briefly, not the default 30 s.
    JOBSCOPE_RUNAWAY_GRACE: '1s',
    ...opts.env,
  });
  const logs = new LogCapture();
  const registry = await loadRegistry(config.jobsDir);
  const runtime = new Runtime(config, registry, createLogger(config.logLevel, logs));
  await runtime.ready();
  return { runtime, logs };
}
