import type { RunReport } from '../../src/interfaces.ts';
import type { Runtime } from '../../src/runtime/runtime.ts';

/** Polls a run until it completes or fails (bounded). */
export async function waitForRun(runtime: Runtime, runId: string, timeoutMs = 15_000): Promise<RunReport> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const report = await runtime.queues.report(runId);
    if (report.state === 'completed' || report.state === 'failed') return report;
    if (Date.now() > deadline) throw new Error(`run ${runId} still ${report.state} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Polls until `check` is true (bounded). */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
