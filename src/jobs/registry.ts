// Loads every job file in the jobs folder (.ts without a build step, .js, .mjs) into a registry keyed by job name.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { JobDefinitionError, UnknownJobError } from '../errors.ts';
import type { RegisteredJob } from '../interfaces.ts';
import { registerDefinition } from './define.ts';

const EXTENSIONS = ['.ts', '.mts', '.js', '.mjs'];

export class Registry {
  readonly jobs: ReadonlyMap<string, RegisteredJob>;
  constructor(jobs: RegisteredJob[]) {
    this.jobs = new Map(jobs.map((j) => [j.name, j]));
  }
  get names(): string[] {
    return [...this.jobs.keys()];
  }
  get(name: string): RegisteredJob {
    const job = this.jobs.get(name);
    if (!job) throw new UnknownJobError(name, this.names);
    return job;
  }
  has(name: string): boolean {
    return this.jobs.has(name);
  }
}

/** Job files in `dir`: skips declaration files, tests and names starting with '_' or '.' (helpers shared by jobs). */
export function jobFiles(dir: string): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new JobDefinitionError(dir, undefined, 'the jobs folder does not exist; create it or set JOBSCOPE_JOBS');
  }
  return readdirSync(dir)
    .filter((f) => EXTENSIONS.includes(path.extname(f)) && !f.endsWith('.d.ts') && !/\.test\.|\.spec\./.test(f) && !/^[_.]/.test(f))
    .sort()
    .map((f) => path.join(dir, f));
}

export async function loadJob(file: string): Promise<RegisteredJob> {
  const name = path.basename(file, path.extname(file));
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (err) {
    throw new JobDefinitionError(file, undefined, `cannot be loaded: ${(err as Error).message}`);
  }
  if (mod.default === undefined) {
    throw new JobDefinitionError(file, undefined, 'has no default export; add `export default defineJob({ ... })`');
  }
  return registerDefinition(name, file, mod.default);
}

/** Loads every job; the first invalid file stops loading with an error that names it. Two files with one name also stop it. */
export async function loadRegistry(dir: string): Promise<Registry> {
  const jobs: RegisteredJob[] = [];
  const seen = new Map<string, string>();
  for (const file of jobFiles(dir)) {
    const job = await loadJob(file);
    const other = seen.get(job.name);
    if (other) throw new JobDefinitionError(file, undefined, `job name "${job.name}" is also defined by ${other}; keep one`);
    seen.set(job.name, file);
    jobs.push(job);
  }
  return new Registry(jobs);
}
