// Final outcomes on their way to the alerts (control/alerts.ts), from the run executor.
import type { Alerts, FinishedRun } from '../control/alerts.ts';

/**
 * Hands final outcomes to the alerts, at most one call in flight per job. Each call swaps the job's last
 * outcome in Redis (one script call, on the control connection, per run); a 'completed' that follows a 'completed' still
 * waiting its turn would read 'completed' and write it again, so it is folded into it. Failures, timeouts and the other
 * outcomes are each passed on, in order.
 */
export class OutcomeFeed {
  private readonly alerts: Alerts;
  private readonly perJob = new Map<string, { busy: boolean; queue: FinishedRun[]; last: string }>();
  constructor(alerts: Alerts) {
    this.alerts = alerts;
  }
  push(run: FinishedRun): void {
    let state = this.perJob.get(run.job.name);
    if (!state) this.perJob.set(run.job.name, (state = { busy: false, queue: [], last: '' }));
    if (state.busy && run.outcome === 'completed' && (state.queue.at(-1)?.outcome ?? state.last) === 'completed') return;
    state.queue.push(run);
    this.next(run.job.name, state);
  }
  private next(job: string, state: { busy: boolean; queue: FinishedRun[]; last: string }): void {
    if (state.busy) return;
    const run = state.queue.shift();
    if (!run) return void this.perJob.delete(job);
    state.busy = true;
    state.last = run.outcome;
    void this.alerts.finished(run).finally(() => {
      state.busy = false;
      this.next(job, state);
    });
  }
}
