// The Run page's view of a run, projected from the read model: one row per attempt (the attempts that did not complete as
// the worker host recorded them, then the current or last one from BullMQ's fields), each with the claims of the tokens it
// was given, and every log line with its time and attempt.
import type { RunOutcome, TokenClaims } from '../interfaces.ts';
import { FAILED_OUTCOMES } from './outcome.ts';
import { firstLine, type Run } from './model.ts';

/** One attempt as the Run page shows it. */
export interface AttemptRow {
  attempt: number;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  /** An outcome, 'running', or 'handed back' (shutdown or a lost lock: the attempt did not count). */
  outcome: string;
  error: string | null;
}

export interface LogLine {
  line: string;
  /** When it was logged (null for lines written before jobscope recorded times). */
  time: string | null;
  attempt: number | null;
}

function iso(ms: number | null): string | null {
  return ms ? new Date(ms).toISOString() : null;
}

/** The attempt rows: the attempts that did not complete as recorded, then the current or last one from BullMQ. */
export function attemptRows(
  run: Pick<Run, 'state' | 'outcome' | 'recorded' | 'stacks' | 'attempts' | 'startedAt' | 'finishedAt'>,
): AttemptRow[] {
  const { state, stacks, attempts: attemptsMade, startedAt, finishedAt } = run;
  const rows: AttemptRow[] = run.recorded.map((r) => ({
    attempt: r.a,
    startedAt: iso(r.start),
    finishedAt: iso(r.end),
    durationMs: Math.max(0, r.end - r.start),
    outcome: r.outcome,
    error: null,
  }));
  // BullMQ keeps one stack per failed attempt, in order: they name the errors of the recorded failed attempts.
  const failedRows = rows.filter((r) => FAILED_OUTCOMES.includes(r.outcome as RunOutcome));
  failedRows.forEach((row, i) => (row.error = firstLine(stacks[stacks.length - failedRows.length + i] ?? null, 1000)));
  const last = rows[rows.length - 1];
  const counted = last && last.outcome !== 'handed back';
  if (state === 'active') {
    rows.push({
      attempt: counted ? last.attempt + 1 : Math.max(attemptsMade + 1, last?.attempt ?? 1),
      startedAt: iso(startedAt),
      finishedAt: null,
      durationMs: startedAt ? Date.now() - startedAt : null,
      outcome: 'running',
      error: null,
    });
  } else if ((state === 'completed' || state === 'failed') && !(counted && last.attempt === attemptsMade)) {
    // Completed attempts are not recorded (the run's own times are theirs); a failure nobody recorded (a stalled run) neither.
    rows.push({
      // The attempt after the last recorded one (a retried run's attempts go on from there).
      attempt: Math.max(attemptsMade, counted ? last.attempt + 1 : last ? last.attempt : 1, 1),
      startedAt: iso(startedAt),
      finishedAt: iso(finishedAt),
      durationMs: startedAt && finishedAt ? Math.max(0, finishedAt - startedAt) : null,
      outcome: run.outcome ?? state,
      error: state === 'failed' ? firstLine(stacks[stacks.length - 1] ?? null, 1000) : null,
    });
  }
  return rows;
}

/**
 * Log lines with their time and attempt: RUN_FIELDS.logMeta runs in step with the log list, aligned at the end. A line is
 * given to the attempt row that had started by its time (the recorded number otherwise).
 */
export function logLines(logs: string[], meta: string | null, rows: AttemptRow[] = []): LogLine[] {
  const entries = (meta ?? '').split('\n').filter(Boolean);
  const offset = logs.length - entries.length;
  return logs.map((line, i) => {
    const entry = i - offset >= 0 ? entries[i - offset] : undefined;
    const [ms, attempt] = (entry ?? '').split(',').map(Number);
    if (!entry || !ms) return { line, time: null, attempt: null };
    return { line, time: new Date(ms).toISOString(), attempt: rowAt(rows, ms)?.attempt ?? (attempt || null) };
  });
}

/** The attempt row that had started by `ms` (the latest such). */
export function rowAt(rows: AttemptRow[], ms: number): AttemptRow | undefined {
  let found: AttemptRow | undefined;
  for (const row of rows) {
    const start = row.startedAt ? Date.parse(row.startedAt) : NaN;
    if (start <= ms && (!found || start >= Date.parse(found.startedAt!))) found = row;
  }
  return found;
}

/** Each attempt row with the claims of its tokens: a token belongs to the attempt it names (att), else to the one started by its issue. */
export function attemptsWithClaims(rows: AttemptRow[], claims: TokenClaims[]): (AttemptRow & { claims: TokenClaims[] })[] {
  const claimsOf = new Map<AttemptRow, TokenClaims[]>(rows.map((r) => [r, []]));
  for (const c of claims) {
    const row = rows.find((r) => r.attempt === c.att && r.outcome !== 'handed back') ?? rowAt(rows, c.iat * 1000 + 999);
    if (row) claimsOf.get(row)?.push(c);
  }
  return rows.map((row) => ({ ...row, claims: claimsOf.get(row) ?? [] }));
}
