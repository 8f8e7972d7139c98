// `jobscope trigger`: enqueue a run and, with --wait, wait for its end and print it as JSON.
import type { Control } from '../control/control.ts';
import { parseDuration } from '../duration.ts';
import { OverlapSkippedError, RunWaitTimeoutError } from '../errors.ts';
import { loadRegistry } from '../jobs/registry.ts';
import { openControl, osUser, UsageError, type CliIO, type Env } from './common.ts';

/** Exit code of a trigger that overlap 'skip' refused (1 is a failed run, 2 a usage error). */
const EXIT_SKIPPED = 3;

/** How long `--wait` waits, without --timeout, for a run of a job that no live worker serves. */
export const NO_WORKER_WAIT_MS = 30_000;

/**
 * Waits for the run's end (Control.waitForRun, through BullMQ's QueueEvents) and prints it. When no live worker serves
 * the job (their heartbeats), it says so at once and, without --timeout, gives up after NO_WORKER_WAIT_MS unless a
 * worker has taken the run by then. A run delayed by --delay/--at waits for --timeout only.
 */
async function waitAndPrint(
  control: Control,
  name: string,
  runId: string,
  flags: { timeout?: string; delay?: string; at?: string },
  io: CliIO,
): Promise<number> {
  const limit = flags.timeout ? parseDuration(flags.timeout) : null;
  if (flags.timeout && limit === null) throw new UsageError(`--timeout "${flags.timeout}" is not a duration (example: 5m)`);
  const served = await control.hasWorkers(name).catch(() => true);
  const fallback = !served && limit === null && !flags.delay && !flags.at ? NO_WORKER_WAIT_MS : undefined;
  if (!served) {
    const giveUp =
      limit !== null ? `--timeout ${flags.timeout}` : fallback ? `${fallback / 1000} s (set --timeout to wait longer)` : '--timeout';
    io.err(
      `jobscope: no worker serves "${name}" right now: start one with \`jobscope worker\` (or \`jobscope start\`) on the same ` +
        `REDIS_URL and JOBSCOPE_PREFIX; ${runId} waits in the queue; --wait gives up after ${giveUp}`,
    );
  }
  let report;
  try {
    report = await control.waitForRun(runId, limit ?? fallback);
  } catch (err) {
    if (!(err instanceof RunWaitTimeoutError)) throw err;
    // A worker came and took the run within the no-worker wait: wait for it as if one had been there from the start.
    if (limit === null && err.state === 'active') report = await control.waitForRun(runId).catch(() => null);
    if (!report) {
      const after = limit !== null ? flags.timeout : `${(fallback ?? 0) / 1000}s`;
      const why = limit !== null ? '' : ` and no worker serves "${name}"`;
      io.out(JSON.stringify({ runId, state: err.state, error: `still ${err.state} after ${after}${why}` }, null, 2));
      return 1;
    }
  }
  const { state, outcome, attempts, result, error, triggeredBy, children } = report;
  io.out(JSON.stringify({ runId, state, outcome, attempts, result, error, triggeredBy, children }, null, 2));
  return outcome === 'completed' ? 0 : 1;
}

export async function trigger(
  env: Env,
  name: string | undefined,
  flags: { data?: string; wait?: boolean; timeout?: string; delay?: string; at?: string; priority?: string; key?: string },
  io: CliIO,
): Promise<number> {
  if (!name) throw new UsageError('usage: jobscope trigger <job> [--data JSON] [--delay 5m | --at ISO] [--priority N] [--key K] [--wait]');
  const priority = flags.priority === undefined ? undefined : Number(flags.priority);
  if (priority !== undefined && !Number.isInteger(priority)) throw new UsageError(`--priority "${flags.priority}" is not an integer`);
  let data: unknown = {};
  if (flags.data !== undefined) {
    try {
      data = JSON.parse(flags.data);
    } catch {
      throw new UsageError(`--data is not valid JSON: ${flags.data}`);
    }
  }
  const registry = await loadRegistry(env.config.jobsDir);
  const control = await openControl(env, registry);
  try {
    let runId: string;
    try {
      const added = await control.trigger(name, data, {
        trigger: 'manual',
        by: `cli:${osUser()}`,
        delay: flags.delay,
        at: flags.at,
        priority,
        key: flags.key,
      });
      runId = added.runId;
      if (!flags.wait) {
        io.out(JSON.stringify(added));
        return 0;
      }
    } catch (err) {
      if (!(err instanceof OverlapSkippedError)) throw err;
      io.err(`jobscope: ${err.message}`);
      io.out(JSON.stringify({ error: err.code, blocking: err.blocking }));
      return EXIT_SKIPPED;
    }
    return await waitAndPrint(control, name, runId, flags, io);
  } finally {
    await control.close();
  }
}
