// Admission: whether an attempt may run at all, decided before anything is minted. The data must fit the job's params; a
// scheduled fire must still be in the code and in Redis, and on time (misfire rules); overlap 'skip' and 'replace' decide
// against the job's other runs (the atomic part lives in control/overlap.ts). A refused run ends with its outcome
// (skipped, misfire, cancelled, failed) and is never retried; a replace run whose predecessors still run waits.
import type { Job, Queue } from 'bullmq';
import { ParamsError, RunCancelledError, RunMisfireError, RunSkippedError } from '../errors.ts';
import type { RegisteredJob } from '../interfaces.ts';
import type { Queues } from '../control/queues.ts';
import { runIdOf } from '../run/model.ts';
import type { Attempt } from './attempt.ts';

export type Admission =
  | { verdict: 'run' }
  /** Not run: ended at once with the reason's outcome. */
  | { verdict: 'refuse'; reason: Error }
  /** A replace run whose predecessors still run: back to the queue, to look again a moment later. */
  | { verdict: 'wait' };

/** When a scheduler-made run was due: the millis that end its id (`repeat:<scheduler>:<millis>`). */
export function fireTime(bullJob: Pick<Job, 'id' | 'timestamp'>): number {
  const m = /:(\d+)$/.exec(bullJob.id ?? '');
  return m ? Number(m[1]) : bullJob.timestamp;
}

const RUN: Admission = { verdict: 'run' };

/**
 * Applies the rules, in order: data, schedule (a scheduled fire's first start), overlap. The verdict comes at once (no
 * promise) when no rule needs Redis: most runs (not a scheduled fire's first start, overlap 'queue').
 */
export function admit(attempt: Attempt, queues: Queues): Admission | Promise<Admission> {
  const { job, meta } = attempt;
  // Data may come from Bull Board's "Add job" or an older schema: the handler only ever sees valid data. (BullMQ parses
  // the data afresh for each attempt, so validation's defaults never leak into the stored job.)
  const issues = job.validate(attempt.data);
  if (issues) return { verdict: 'refuse', reason: new ParamsError(job.name, issues) };
  const scheduledFirst = attempt.origin === 'schedule' && attempt.firstStart;
  if (!scheduledFirst && (job.overlap === 'queue' || meta.shard)) return RUN;
  return admitInRedis(attempt, queues, scheduledFirst);
}

/** The rules that read Redis: a scheduled fire's schedule and misfire, the overlap rules. */
async function admitInRedis(attempt: Attempt, queues: Queues, scheduledFirst: boolean): Promise<Admission> {
  const { job, bullJob, meta } = attempt;
  if (scheduledFirst) {
    const verdict = await checkFire(job, bullJob, queues);
    if (verdict instanceof Error) return { verdict: 'refuse', reason: verdict };
    if (verdict === 'late') {
      attempt.run.trigger = 'misfire';
      await attempt.record.misfire(
        `misfire: started ${((Date.now() - fireTime(bullJob)) / 1000).toFixed(1)} s after its due time; run once`,
      );
    }
  }
  // A shard is part of its parent's run: the parent passed the schedule and overlap rules for all of them.
  if (job.overlap !== 'queue' && !meta.shard) {
    const verdict = await checkOverlap(job, bullJob, scheduledFirst, queues);
    if (verdict === 'wait') return { verdict: 'wait' };
    if (verdict) return { verdict: 'refuse', reason: verdict };
  }
  return RUN;
}

/** A scheduled fire: is it still in the code and in Redis, and on time? 'late' runs once as a misfire. */
async function checkFire(job: RegisteredJob, bullJob: Job, queues: Queues): Promise<Error | 'late' | null> {
  if (!job.schedule) return new RunSkippedError('the job file no longer has a schedule');
  // Gone from Redis: removed by a newer version of the job file (scheduler sync) or paused.
  if (!(await queues.queue(job.name).getJobScheduler(job.name))) return new RunSkippedError('its schedule was removed');
  const lateMs = Date.now() - fireTime(bullJob);
  if (lateMs <= job.misfireGraceMs) return null;
  return job.misfire === 'once' ? 'late' : new RunMisfireError(lateMs, job.misfireGraceMs);
}

/** Was another run of the queue active at `t`? (Still active, or the latest finished run spans `t`.) */
async function busyAt(queue: Queue, t: number, selfId: string | undefined): Promise<boolean> {
  if ((await queue.getActiveCount()) > 1) return true;
  // The newest finished run of each kind (getJobs takes the range per state), whichever finished last.
  const finished = await queue.getJobs(['completed', 'failed'], 0, 0, false);
  const last = finished.filter(Boolean).sort((a, b) => (b.finishedOn ?? 0) - (a.finishedOn ?? 0))[0];
  return Boolean(last && last.id !== selfId && (last.processedOn ?? Infinity) <= t && (last.finishedOn ?? 0) > t);
}

/**
 * overlap 'skip': a scheduled fire is skipped when another run was active at its due time or counts now (a trigger was
 * refused at enqueue instead). 'replace': a scheduled fire reserves its place as the newest run and cancels the others;
 * a run reserved before another one that still counts has been replaced and ends cancelled without running (however
 * the triggers raced: see overlap.ts); every other replace run waits ('wait') until the runs it replaced have stopped, so
 * two never run at once, whatever the job's concurrency.
 */
async function checkOverlap(job: RegisteredJob, bullJob: Job, scheduledFirst: boolean, queues: Queues): Promise<Error | 'wait' | null> {
  const id = bullJob.id!;
  if (job.overlap === 'skip') {
    if (!scheduledFirst) return null;
    if (await busyAt(queues.queue(job.name), fireTime(bullJob), id)) {
      return new RunSkippedError('another run of this job was active at its due time (overlap: skip)');
    }
    const claim = await queues.overlap.claim(job.name, id, 'skip');
    return claim.ok
      ? null
      : new RunSkippedError(`another run is waiting, delayed or active (overlap: skip): ${runIdOf(job.name, claim.others[0])}`);
  }
  const claim = await queues.overlap.claim(job.name, scheduledFirst ? id : '', 'replace', id);
  if (claim.newer) return new RunCancelledError(`replaced by a newer run: ${runIdOf(job.name, claim.newer)}`);
  if (scheduledFirst) {
    await Promise.all(claim.others.map((o) => queues.cancel(runIdOf(job.name, o), 'replaced by a scheduled run').catch(() => undefined)));
  }
  const states = await Promise.all(claim.others.map((o) => queues.queue(job.name).getJobState(o)));
  return states.includes('active') ? 'wait' : null;
}

/**
 * While a run of a scheduled replace job executes: at the schedule's next fire, reserves that fire's run as the newest and
 * cancels the runs before it (this one included), so the fire replaces this run when it is due, not when it could start
 * (with concurrency 1 it cannot start while this run holds the slot). Returns what stops watching.
 */
export function replaceAtNextFire(job: RegisteredJob, queues: Queues): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const fire = async (fireId: string) => {
    // The schedule changed or was paused since: that fire will not come.
    if (stopped || !(await queues.queue(job.name).getJob(fireId))) return;
    const claim = await queues.overlap.claim(job.name, fireId, 'replace');
    await Promise.all(claim.others.map((o) => queues.cancel(runIdOf(job.name, o), 'replaced by a scheduled run').catch(() => undefined)));
  };
  queues
    .queue(job.name)
    .getJobScheduler(job.name)
    .then((scheduler) => {
      const next = scheduler?.next;
      if (stopped || !next) return;
      timer = setTimeout(() => void fire(`repeat:${job.name}:${next}`).catch(() => undefined), Math.max(0, next - Date.now()));
    })
    .catch(() => undefined);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
