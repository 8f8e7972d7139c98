// Loads every job file in the jobs folder into a registry keyed by job name. Job files are `.ts .mts .cts .js .mjs .cjs`
// and load in any npm project, `"type": "module"` or CommonJS (npm's default), without a build step.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire, Module } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { JobDefinitionError, JobFilesError, UnknownJobError } from '../errors.ts';
import type { RegisteredJob } from '../interfaces.ts';
import { registerDefinition } from './define.ts';
import { workflowProblems } from './workflow.ts';

const EXTENSIONS = ['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'];

export class Registry {
  private map: Map<string, RegisteredJob>;
  constructor(jobs: RegisteredJob[]) {
    this.map = new Map(jobs.map((j) => [j.name, j]));
  }
  get jobs(): ReadonlyMap<string, RegisteredJob> {
    return this.map;
  }
  /** Swaps in a new set of definitions (--watch): everything holding this registry sees them from now on. */
  replace(jobs: RegisteredJob[]): void {
    this.map = new Map(jobs.map((j) => [j.name, j]));
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
    .filter(isJobFile)
    .sort()
    .map((f) => path.join(dir, f));
}

/** Is this file (a name or a path) a job file? Not a helper (`_x.ts`), a declaration, a test or a dotfile. */
export function isJobFile(file: string): boolean {
  const f = path.basename(file);
  return EXTENSIONS.includes(path.extname(f)) && !/\.d\.[mc]?ts$/.test(f) && !/\.test\.|\.spec\./.test(f) && !/^[_.]/.test(f);
}

/** How Node runs the file: by its extension, else by the `"type"` of the nearest package.json (CommonJS when absent). */
export function moduleFormat(file: string): 'module' | 'commonjs' {
  const ext = path.extname(file);
  if (ext === '.mts' || ext === '.mjs') return 'module';
  if (ext === '.cts' || ext === '.cjs') return 'commonjs';
  for (let dir = path.dirname(path.resolve(file)); ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        return (JSON.parse(readFileSync(manifest, 'utf8')) as { type?: unknown }).type === 'module' ? 'module' : 'commonjs';
      } catch {
        return 'commonjs';
      }
    }
    if (path.dirname(dir) === dir) return 'commonjs';
  }
}

let tsx: Promise<void> | undefined;

/**
 * Registers tsx's ESM and CommonJS hooks once per process (what `node --import tsx` does), so TypeScript compiles on load
 * in either module system. Not namespaced on purpose: a namespaced tsx gives a job its own copy of every package it
 * imports, jobscope included, and a job must share the runner's jobscope (its error classes, its run scope).
 */
function registerTsx(): Promise<void> {
  tsx ??= (async () => {
    const [esm, cjs] = await Promise.all([import('tsx/esm/api'), import('tsx/cjs/api')]);
    esm.register();
    cjs.register();
  })();
  return tsx;
}

/**
 * tsx's CommonJS hook compiles an ES module that a CommonJS file require()s into a CommonJS copy. For jobscope itself that
 * copy would be a second instance (its `instanceof` checks and run scope no longer shared with the runner), so
 * `require('jobscope')` from a job is answered from require.cache with the ES module the runner has loaded, which is
 * what Node's own require(esm) returns.
 */
async function shareJobscope(requireFromJob: NodeJS.Require): Promise<void> {
  let entry: string;
  try {
    entry = requireFromJob.resolve('jobscope');
  } catch {
    return; // the job cannot see jobscope; nothing to share
  }
  if (requireFromJob.cache[entry]) return;
  const exports = (await import(pathToFileURL(entry).href)) as object;
  const mod = new Module(entry);
  mod.filename = entry;
  mod.loaded = true;
  mod.exports = exports;
  requireFromJob.cache[entry] = mod;
}

const NOTHING = Symbol('no export');

/** How many job files load at once. */
const LOAD_AT_ONCE = 16;

/**
 * The file's definition: `export default` (ESM, or TypeScript compiled to CommonJS) or `module.exports` (CommonJS).
 * `version` loads it afresh (--watch): a new URL for Node's import cache; CommonJS files are dropped from require.cache.
 */
async function exported(file: string, version?: number): Promise<unknown> {
  await registerTsx();
  if (moduleFormat(file) === 'module') {
    const url = pathToFileURL(file).href + (version === undefined ? '' : `?v=${version}`);
    const mod = (await import(url)) as { default?: unknown };
    return 'default' in mod ? mod.default : NOTHING;
  }
  const requireFromJob = createRequire(file);
  await shareJobscope(requireFromJob);
  if (version !== undefined) {
    // The job file and the helpers next to it, not jobscope or the project's dependencies.
    const dir = path.dirname(file) + path.sep;
    for (const key of Object.keys(requireFromJob.cache))
      if (key.startsWith(dir) && !key.includes(`${path.sep}node_modules${path.sep}`)) delete requireFromJob.cache[key];
  }
  const value: unknown = requireFromJob(file);
  if (typeof value !== 'object' || value === null) return value === undefined ? NOTHING : value;
  const keys = Object.keys(value);
  if ('__esModule' in value || (keys.length === 1 && keys[0] === 'default')) {
    return 'default' in value ? (value as { default: unknown }).default : NOTHING;
  }
  return keys.length === 0 ? NOTHING : value;
}

interface Place {
  file: string;
  line: number;
  column?: number;
}

const where = (p: Place): string => `${p.file}:${p.line}${p.column ? `:${p.column}` : ''}`;
const sameFile = (a: string, b: string): boolean => path.resolve(a) === path.resolve(b);

/** `file:line[:col]` places in a stack: V8's `file:///x.mjs:3` header of a SyntaxError and frames `at f (/x.ts:3:7)`. */
function stackPlaces(stack: string): Place[] {
  const places: Place[] = [];
  for (const m of stack.matchAll(/((?:file:\/\/)?\/[^\s():?]+|[A-Za-z]:\\[^\s():?]+)(?:\?[^\s():]*)?:(\d+)(?::(\d+))?/g)) {
    let file = m[1]!;
    try {
      if (file.startsWith('file://')) file = fileURLToPath(file);
    } catch {
      continue;
    }
    places.push({ file, line: Number(m[2]), column: m[3] ? Number(m[3]) : undefined });
  }
  return places;
}

/** esbuild's report (tsx compiles with it): `Transform failed with 1 error:\n/x.ts:1:16: ERROR: Expected ...` (column from 0). */
function esbuildReport(message: string): { place: Place; text: string } | undefined {
  const m = /^(.+?):(\d+):(\d+): ERROR: (.+)$/m.exec(message);
  return m ? { place: { file: m[1]!, line: Number(m[2]), column: Number(m[3]) + 1 }, text: m[4]! } : undefined;
}

/**
 * Where a native ES module's SyntaxError is: Node puts no position in such an error, so the source is parsed again with the
 * esbuild that tsx brings, which reports one.
 */
function syntaxErrorPlace(file: string): Place | undefined {
  try {
    const esbuild = createRequire(createRequire(import.meta.url).resolve('tsx/package.json'))('esbuild') as {
      transformSync(code: string, options: object): unknown;
    };
    const ts = /\.[mc]?ts$/.test(file);
    esbuild.transformSync(readFileSync(file, 'utf8'), { loader: ts ? 'ts' : 'js', format: 'esm', sourcefile: file });
  } catch (err) {
    const loc = (err as { errors?: { location?: { line: number; column: number } | null }[] }).errors?.[0]?.location;
    if (loc) return { file, line: loc.line, column: loc.column + 1 };
  }
  return undefined;
}

/**
 * Why `file` cannot be loaded, in one line, and where: the line in that file (esbuild's or V8's position of a syntax error,
 * else the first stack frame in the file), or, when the error comes from a file it imports, that file's place in the text.
 */
export function describeLoadError(err: unknown, file: string): { problem: string; at?: { line: number; column?: number } } {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { name?: unknown; message?: unknown; stack?: unknown; code?: unknown };
  const message = typeof e.message === 'string' ? e.message : String(err);
  const stack = typeof e.stack === 'string' ? e.stack : message;
  let text: string;
  let place: Place | undefined;
  let inFile = false;
  const esbuild = esbuildReport(message);
  if (esbuild) {
    // tsx may hand esbuild the file under another extension (x.cts as x.ts): compare without it.
    const base = (f: string) => path.join(path.dirname(path.resolve(f)), path.basename(f, path.extname(f)));
    text = esbuild.text;
    place = esbuild.place;
    inFile = base(place.file) === base(file);
  } else {
    const name = typeof e.name === 'string' && e.name !== 'Error' ? `${e.name}: ` : '';
    text = `${name}${message.split('\n')[0]}`;
    const places = stackPlaces(stack);
    place = places.find((p) => sameFile(p.file, file));
    if (!place && e.name === 'SyntaxError' && moduleFormat(file) === 'module') place = syntaxErrorPlace(file);
    inFile = place !== undefined;
    place ??= places.find((p) => !p.file.includes(`${path.sep}node_modules${path.sep}`) && path.isAbsolute(p.file));
  }
  let problem = `cannot be loaded: ${text}`;
  if (place && !inFile) problem += ` (at ${where(place)})`;
  if (/top-level await/i.test(text) && moduleFormat(file) === 'commonjs') {
    problem += '; top-level await needs an ES module: name the file .mts, or set "type": "module" in package.json';
  } else if (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE') {
    problem +=
      '; a CommonJS file can require() an ES module only on Node.js 20.19+ or 22.12+ and only without top-level await: use import, or name the file .mts';
  }
  return { problem, at: place && inFile ? { line: place.line, column: place.column } : undefined };
}

export async function loadJob(file: string, version?: number): Promise<RegisteredJob> {
  const name = path.basename(file, path.extname(file));
  let value: unknown;
  try {
    value = await exported(file, version);
  } catch (err) {
    const { problem, at } = describeLoadError(err, file);
    throw new JobDefinitionError(file, undefined, problem, at);
  }
  if (value === NOTHING) {
    throw new JobDefinitionError(
      file,
      undefined,
      moduleFormat(file) === 'module'
        ? 'has no default export; add `export default defineJob({ ... })`'
        : 'has no default export; add `export default defineJob({ ... })` (or `module.exports = defineJob({ ... })` in CommonJS)',
    );
  }
  return registerDefinition(name, file, value);
}

/**
 * Every job of `dir` and every problem: one per bad file (a file that cannot be loaded, an invalid definition, a duplicate
 * name, a `then` to an unknown job or in a cycle). `version` loads every file afresh (--watch).
 */
/** `reuse`: the already loaded job of a file, to keep instead of loading the file again (--watch: an unchanged file). */
export async function loadJobs(
  dir: string,
  version?: number,
  reuse?: (file: string) => RegisteredJob | undefined,
): Promise<{ jobs: RegisteredJob[]; errors: JobDefinitionError[] }> {
  const jobs: RegisteredJob[] = [];
  const errors: JobDefinitionError[] = [];
  const seen = new Map<string, string>();
  const files = jobFiles(dir);
  // LOAD_AT_ONCE files load at once: each import waits on tsx's loader thread, so one at a time leaves the main thread
  // idle. Taken in file order after, so which file wins a duplicate name does not depend on timing.
  const loaded: (RegisteredJob | Error)[] = new Array(files.length);
  let nextFile = 0;
  const loader = async () => {
    for (let i = nextFile++; i < files.length; i = nextFile++) {
      loaded[i] = await Promise.resolve(reuse?.(files[i]) ?? loadJob(files[i], version)).catch((err: Error) => err);
    }
  };
  await Promise.all(Array.from({ length: LOAD_AT_ONCE }, loader));
  for (const [i, file] of files.entries()) {
    const job = loaded[i];
    if (job instanceof Error) {
      if (!(job instanceof JobDefinitionError)) throw job;
      errors.push(job);
      continue;
    }
    const other = seen.get(job.name);
    if (other) {
      errors.push(new JobDefinitionError(file, undefined, `job name "${job.name}" is also defined by ${other}; keep one`));
      continue;
    }
    seen.set(job.name, file);
    jobs.push(job);
  }
  return { jobs, errors: [...errors, ...workflowProblems(jobs)] };
}

/** Loads every job; any bad file stops loading with one JobFilesError that lists every bad file (with its line, when known). */
export async function loadRegistry(dir: string): Promise<Registry> {
  const { jobs, errors } = await loadJobs(dir);
  if (errors.length) throw new JobFilesError(errors);
  return new Registry(jobs);
}
