// --watch: notices added, changed and removed job files (and helpers beside them) and asks for one reload per burst of
// changes. fs.watch is enough for one folder; a burst (an editor's write-rename-write) settles for `settleMs` first.
import { watch, type FSWatcher } from 'node:fs';

export interface JobsWatcher {
  close(): void;
}

export function watchJobs(dir: string, onChange: (version: number) => Promise<void>, settleMs = 250): JobsWatcher {
  let timer: NodeJS.Timeout | undefined;
  let version = 0;
  let running: Promise<void> = Promise.resolve();
  const watcher: FSWatcher = watch(dir, () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const v = ++version;
      // One reload at a time, in order: a change during a reload is picked up by the next one.
      running = running.then(() => onChange(v)).catch(() => undefined);
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
