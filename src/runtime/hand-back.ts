// Hand-back: an attempt that ends without an outcome gives its run back. At the shutdown deadline, or for a replace run
// whose predecessors still run, the run goes back to the queue without consuming an attempt; after a lost lock it is
// already another worker's, and nothing is moved.
import type { Attempt, AttemptHost, Ending } from './attempt.ts';

/** How long a hand-back may wait for Redis (a shutdown must not wait for a Redis that is gone). */
const HAND_BACK_TIMEOUT_MS = 2000;

export type HandBackReason = 'shutdown' | 'lock-lost' | 'replace';

export interface HandBackParts {
  /** Is Redis unreachable now (the process's Redis log)? Then nothing can be moved. */
  redisLost(): boolean;
  /** Runs a shutdown could not hand back: the shutdown names them (RunExecutor.close). */
  unreturned: Set<string>;
  events: Pick<AttemptHost, 'emit'>;
}

/**
 * Puts the attempt's run back in the queue without consuming an attempt (`lock`: the lock it is moved with), as late as
 * `untilMs` when given, once `revoked` (the execution's tokens) has settled. BullMQ is then told the run is handled
 * elsewhere (Ending 'handed-back').
 */
export async function handBack(
  attempt: Attempt,
  lock: string | undefined,
  reason: HandBackReason,
  parts: HandBackParts,
  untilMs?: number,
  revoked?: Promise<void>,
): Promise<Ending> {
  const { bullJob, log, run } = attempt;
  if (reason === 'lock-lost') {
    log.warn('run lost its lock (another worker has it now): this execution was aborted and its tokens revoked');
  } else if (reason === 'shutdown' && parts.redisLost()) {
    // Nothing can be said to Redis: the shutdown names the run (close()); its lock expires and another worker takes it.
    parts.unreturned.add(run.id);
  } else {
    let timer: NodeJS.Timeout | undefined;
    try {
      // Bounded: Redis may go away during the call, and a shutdown must not wait for it.
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer from Redis within ${HAND_BACK_TIMEOUT_MS} ms`)), HAND_BACK_TIMEOUT_MS);
      });
      // The execution's tokens are revoked before the run can be another worker's (`revoked`, after a shutdown's abort).
      const move = async () => {
        await revoked;
        await (untilMs ? bullJob.moveToDelayed(untilMs, lock) : bullJob.moveToWait(lock));
      };
      await Promise.race([move(), late]);
      if (reason === 'shutdown') log.info('run handed back: the worker is shutting down; another worker takes it over');
    } catch (err) {
      if (reason === 'shutdown') parts.unreturned.add(run.id);
      log.warn({ err: (err as Error).message }, 'could not hand the run back; it is recovered when its lock expires');
    } finally {
      clearTimeout(timer);
    }
  }
  if (reason !== 'replace') {
    parts.events.emit('run:handback', { job: run.job, runId: run.id, attempt: run.attempt, reason });
    attempt.handedBack();
  }
  return { kind: 'handed-back' };
}
