// How a run ended. A finished run's outcome is 'completed', or, for a failed one, what its worker wrote into the run's hash
// when it recorded the failure (RUN_FIELDS.outcome); the error's text is never read back for it.
import { RunCancelledError, RunMisfireError, RunSkippedError, RunTimeoutError } from '../errors.ts';
import type { RunOutcome, RunState } from '../interfaces.ts';

export const OUTCOMES: RunOutcome[] = ['completed', 'failed', 'timeout', 'cancelled', 'skipped', 'misfire'];
/** The outcomes of a run in BullMQ's failed set. */
export const FAILED_OUTCOMES: RunOutcome[] = ['failed', 'timeout', 'cancelled', 'skipped', 'misfire'];

/**
 * What the worker records for the reason an attempt ended: jobscope's own errors (by class, never by name: a handler's
 * error that calls itself RunTimeoutError is a failure) mark the outcomes other than 'failed'.
 */
export function outcomeOfError(reason: unknown): RunOutcome {
  if (reason instanceof RunTimeoutError) return 'timeout';
  if (reason instanceof RunCancelledError) return 'cancelled';
  if (reason instanceof RunSkippedError) return 'skipped';
  if (reason instanceof RunMisfireError) return 'misfire';
  return 'failed';
}

/** A finished run's outcome from its state and its recorded outcome field; null while it is not finished. */
export function outcomeOf(state: RunState, recorded: string | null | undefined): RunOutcome | null {
  if (state === 'completed') return 'completed';
  if (state !== 'failed') return null;
  // A failure nobody recorded (a run that stalled too often, a failed broadcast) is a plain failure.
  return FAILED_OUTCOMES.includes(recorded as RunOutcome) ? (recorded as RunOutcome) : 'failed';
}
