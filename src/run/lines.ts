// The line fields of a run's hash (RUN_FIELDS.attempts, RUN_FIELDS.logMeta): appended to while the run exists, never after,
// so nothing is left behind a removed run. Written through RunRecord (run/record.ts): the worker's lines and a Retry's.
import type { Redis } from 'ioredis';
import { scripts } from './scripts.ts';

/**
 * Appends a line to one of jobscope's line fields of a run's hash, only while the run exists, keeping the last `keep` lines
 * (0: all). Resolves 0 when the run is gone (or Redis refused: a lost line is not worth failing the run for).
 */
export function appendRunLine(redis: Redis, runKey: string, field: string, line: string, keep = 0): Promise<number> {
  return scripts(redis)
    .appendLine(runKey, field, line, keep)
    .catch(() => 0);
}
