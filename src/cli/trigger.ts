// `jobscope trigger`: enqueue a run and, with --wait, wait for its end and print it as JSON.
import { OverlapSkippedError, RunWaitTimeoutError } from '../errors.ts';
import { loadRegistry } from '../jobs/registry.ts';
import { openControl, osUser, UsageError, type CliIO, type Env } from './common.ts';

/** Exit code of a trigger that overlap 'skip' refused (1 is a failed run, 2 a usage error). */
const EXIT_SKIPPED = 3;

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
    const { parseDuration } = await import('../duration.ts');
    const limit = flags.timeout ? parseDuration(flags.timeout) : null;
    if (flags.timeout && limit === null) throw new UsageError(`--timeout "${flags.timeout}" is not a duration (example: 5m)`);
    // Waits through BullMQ's QueueEvents (Control.waitForRun); after 5 s it says so if no worker serves the job.
    const warn = setTimeout(() => {
      void control.hasWorkers(name).then(
        async (serving) => {
          if (serving) return;
          const { state } = await control.report(runId);
          io.err(
            `jobscope: ${runId} is ${state}, and no worker is connected for "${name}": start one with \`jobscope worker\` or \`jobscope start\``,
          );
        },
        () => undefined,
      );
    }, 5000);
    try {
      const report = await control.waitForRun(runId, limit ?? undefined);
      const { state, outcome, attempts, result, error, triggeredBy, children } = report;
      io.out(JSON.stringify({ runId, state, outcome, attempts, result, error, triggeredBy, children }, null, 2));
      return outcome === 'completed' ? 0 : 1;
    } catch (err) {
      if (!(err instanceof RunWaitTimeoutError)) throw err;
      io.out(JSON.stringify({ runId, state: err.state, error: `still ${err.state} after ${flags.timeout}` }, null, 2));
      return 1;
    } finally {
      clearTimeout(warn);
    }
  } finally {
    await control.close();
  }
}
