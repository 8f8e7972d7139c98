// --watch: notices added, changed and removed job files (and helpers beside them) and asks for one reload per burst of
// changes. fs.watch is enough for one folder; a burst (an editor's write-rename-write) settles for `settleMs` first.
// What changed is decided by content, not by the event: an editor that saves an unchanged file, or touches it, reloads
// nothing, and a reload reloads only the job files whose content changed (every job when a helper changed).
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { isJobFile as jobFile } from './registry.ts';

export interface JobsWatcher {
  close(): void;
}

/** What a burst of events changed: the files (added, changed or removed), and whether any of them is not a job file. */
export interface FolderChanges {
  files: Set<string>;
  /** A helper (or any other file of the folder) changed: the job files that import it may have changed too. */
  helpers: boolean;
}

/** The content digest of every file directly in `dir` (path -> sha256). */
export function folderDigests(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    const file = path.join(dir, name);
    try {
      out.set(file, createHash('sha256').update(readFileSync(file)).digest('hex'));
    } catch {
      // a folder, or a file gone since readdir: not content of ours
    }
  }
  return out;
}

/** A module file a job or a helper can be (not a dotfile). */
function isCode(file: string): boolean {
  return /\.[mc]?[jt]s$/.test(file) && !path.basename(file).startsWith('.');
}

/** The files whose digest differs between two snapshots (added, changed, removed). */
export function changedFiles(before: Map<string, string>, after: Map<string, string>): Set<string> {
  const changed = new Set<string>();
  for (const [file, digest] of after) if (before.get(file) !== digest) changed.add(file);
  for (const file of before.keys()) if (!after.has(file)) changed.add(file);
  return changed;
}

/**
 * Calls `onChange` once per settled burst that changed some file's content, with what changed; `isJobFile` tells job
 * files from helpers.
 */
export function watchJobs(
  dir: string,
  onChange: (version: number, changes: FolderChanges) => Promise<void>,
  settleMs = 250,
  isJobFile: (file: string) => boolean = jobFile,
): JobsWatcher {
  let timer: NodeJS.Timeout | undefined;
  let version = 0;
  let running: Promise<void> = Promise.resolve();
  // The contents the loaded jobs came from (the watcher starts right after the first load).
  let known = folderDigests(dir);
  const watcher: FSWatcher = watch(dir, () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      // One reload at a time, in order: a change during a reload is picked up by the next one.
      running = running
        .then(() => {
          const now = folderDigests(dir);
          // Code only: an editor's swap or backup files (.greet.ts.swp, greet.ts~) change nothing that runs.
          const files = new Set([...changedFiles(known, now)].filter(isCode));
          known = now;
          if (files.size === 0) return;
          return onChange(++version, { files, helpers: [...files].some((f) => !isJobFile(f)) });
        })
        .catch(() => undefined);
    }, settleMs);
  });
  watcher.on('error', () => undefined);
  return {
    close() {
      clearTimeout(timer);
      watcher.close();
    },
  };
}
