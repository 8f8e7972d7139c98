// Writes the planned job files (and their scripts) into the jobs folder, idempotently. A manifest beside them
// (`.xxl-job-import.json`: xxl-job id -> job name, file -> sha256 of what was written) tells apart a file this importer wrote
// and nobody touched since (rewritten when the xxl-job row changed, else left alone), a file edited since (never
// overwritten: listed), and a file that was never the importer's (never overwritten: its name is not used).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { PlannedJob } from './map.ts';
import { renderJob, renderScript } from './render.ts';

export const MANIFEST = '.xxl-job-import.json';

export interface Manifest {
  version: 1;
  /** xxl-job id -> the job name given at its first import. */
  jobs: Record<string, string>;
  /** File (relative to the jobs folder) -> sha256 of the text written. */
  files: Record<string, string>;
}

export type FileAction = 'created' | 'updated' | 'unchanged' | 'kept-edited' | 'kept-not-ours';

export interface FileOutcome {
  file: string;
  action: FileAction;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

export function readManifest(dir: string): Manifest {
  const file = path.join(dir, MANIFEST);
  if (!existsSync(file)) return { version: 1, jobs: {}, files: {} };
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<Manifest>;
  return { version: 1, jobs: parsed.jobs ?? {}, files: parsed.files ?? {} };
}

/** Names of job files in `dir` that this importer did not write (a new xxl-job row must not take them). */
export function foreignNames(dir: string, manifest: Manifest): Set<string> {
  if (!existsSync(dir)) return new Set();
  return new Set(
    readdirSync(dir)
      .filter((f) => /\.(ts|mts|cts|js|mjs|cjs)$/.test(f) && !(f in manifest.files))
      .map((f) => f.replace(/\.[^.]+$/, '')),
  );
}

/** What would happen to one file (nothing is written here). */
function decide(dir: string, rel: string, text: string, manifest: Manifest): FileAction {
  const file = path.join(dir, rel);
  if (!existsSync(file)) return 'created';
  const recorded = manifest.files[rel];
  if (!recorded) return 'kept-not-ours';
  const current = sha256(readFileSync(file, 'utf8'));
  if (current !== recorded) return 'kept-edited';
  return current === sha256(text) ? 'unchanged' : 'updated';
}

/** The files of the imported jobs, decided and (unless dryRun) written, and the manifest updated. */
export function writeJobs(dir: string, jobs: PlannedJob[], manifest: Manifest, dryRun: boolean): Map<number, FileOutcome[]> {
  const outcomes = new Map<number, FileOutcome[]>();
  const next: Manifest = { version: 1, jobs: { ...manifest.jobs }, files: { ...manifest.files } };
  for (const job of jobs) {
    if (job.status === 'not-imported') continue;
    const files: [string, string][] = [[`${job.name}.ts`, renderJob(job)]];
    const script = renderScript(job);
    if (script !== undefined && job.handler?.kind === 'script') files.push([job.handler.file, script]);
    const list: FileOutcome[] = [];
    for (const [rel, text] of files) {
      const action = decide(dir, rel, text, manifest);
      list.push({ file: rel, action });
      if (action !== 'created' && action !== 'updated') continue;
      next.files[rel] = sha256(text);
      if (!dryRun) writeAtomic(path.join(dir, rel), text, rel.endsWith('.ts') ? 0o644 : 0o755);
    }
    next.jobs[String(job.id)] = job.name;
    outcomes.set(job.id, list);
  }
  if (!dryRun) writeAtomic(path.join(dir, MANIFEST), JSON.stringify(next, null, 2) + '\n', 0o644);
  return outcomes;
}

function writeAtomic(file: string, text: string, mode: number): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, file);
}
