// The read model: what a run is, from its BullMQ hash with jobscope's own fields in it (RUN_FIELDS). Every view of a run is
// a projection of `runOf`: the Runs page's row, the run report (GET /api/runs/:id, `trigger --wait`, the client), the run
// index's attribute values and the Run page's attempts and claims. A view reads the hash fields it needs (a row: ROW_FIELDS;
// a report: all of them) and hands them here; nothing else derives a run's fields.
import { UnknownRunError } from '../errors.ts';
import type { RunOutcome, RunReport, RunState, TokenClaims, Trigger } from '../interfaces.ts';
import { traceIdOf } from '../trace.ts';
import { outcomeOf } from './outcome.ts';
import { RUN_FIELDS, type RunMeta } from './redis-keys.ts';

/** A run's hash as read: field -> value (a field not read, or not there, is absent or null). */
export type RunHash = Partial<Record<string, string | null>>;

/**
 * The fields a run row needs (the history lists thousands of runs: no data, no result, no logs). BullMQ's hash fields are
 * named here directly (its layout, pinned to 6.x) because a page of rows is one HMGET per run in one pipeline, where
 * `Job.fromId` reads and parses the whole hash, data and result included.
 */
export const ROW_FIELDS = [
  'name',
  'timestamp',
  'processedOn',
  'finishedOn',
  // BullMQ 6 keeps attemptsMade as `atm`.
  'atm',
  'failedReason',
  'opts',
  RUN_FIELDS.trigger,
  RUN_FIELDS.attempts,
  RUN_FIELDS.outcome,
] as const;

/** The fields of an HMGET answer by name; null when the run's hash is gone. */
export function hashOf(fields: readonly string[], values: readonly (string | null)[] | null | undefined): RunHash | null {
  if (!values) return null;
  const hash: RunHash = {};
  fields.forEach((f, i) => (hash[f] = values[i] ?? null));
  return hash.name == null && hash.timestamp == null ? null : hash;
}

export function runIdOf(job: string, id: string | undefined): string {
  return `${job}:${id}`;
}

/** Splits `<job>:<id>`; the job part never contains ':' (job names cannot), the id part may (scheduler ids do). */
export function parseRunId(runId: string): { job: string; id: string } {
  const i = runId.indexOf(':');
  if (i < 1 || i === runId.length - 1) throw new UnknownRunError(runId);
  return { job: runId.slice(0, i), id: runId.slice(i + 1) };
}

/** BullMQ's reason for a run that stalled more than maxStalledCount times (set by the stalled check, applied by a worker). */
export const STALL_LIMIT_REASON = 'job stalled more than allowable limit';

/** What a run that stalled past the cap reports as its error. */
export function stallLimitMessage(maxStalls?: number): string {
  const cap = maxStalls === undefined ? 'JOBSCOPE_MAX_STALLS' : `JOBSCOPE_MAX_STALLS (${maxStalls})`;
  return `stalled too often: its worker stopped (crashed, or froze past its lock) more times in a row than ${cap} allows`;
}

/** The run's meta from its BullMQ options (see RunMeta), parsed or as BullMQ's Job holds them. */
export function metaOf(job: { opts: unknown }): RunMeta {
  return ((job.opts as { jobscope?: RunMeta } | undefined)?.jobscope ?? {}) as RunMeta;
}

/**
 * Who triggered a run: what its trigger recorded (`by`), or 'schedule' for a scheduled fire; null when nobody was named
 * (an embedding's trigger without `by`, Bull Board's "Add job"): the API reports null and the dashboard a dash.
 */
export function triggeredByOf(meta: RunMeta, trigger: string | null | undefined): string | null {
  return meta.by ?? (trigger === 'schedule' ? 'schedule' : null);
}

/** An attempt that did not complete, as the worker host records it (RUN_FIELDS.attempts: one JSON line each). */
export interface RecordedAttempt {
  a: number;
  start: number;
  end: number;
  outcome: string;
}

/** A run: every field any view of it shows. Times are epoch ms. */
export interface Run {
  runId: string;
  job: string;
  id: string;
  state: RunState;
  outcome: RunOutcome | null;
  trigger: Trigger;
  triggeredBy: string | null;
  retriedBy: string | null;
  parent: string | null;
  children: string[];
  shard: { index: number; total: number } | null;
  traceId: string | null;
  attempts: number;
  priority: number;
  createdAt: number | null;
  startedAt: number | null;
  /** When its first recorded attempt started (else startedAt): a run's duration counts its retries and their backoff. */
  firstStartedAt: number | null;
  finishedAt: number | null;
  dueAt: number | null;
  data: unknown;
  progress: unknown;
  result: unknown;
  /** The run's error (null for a completed run, whatever its earlier attempts said). */
  error: string | null;
  /** BullMQ's error stacks, one per failed attempt, oldest first. */
  stacks: string[];
  recorded: RecordedAttempt[];
  /** One `<ms>,<attempt>` line per log line (RUN_FIELDS.logMeta). */
  logMeta: string | null;
  /** The claims of every token it was given, by attempt and issue time. */
  claims: TokenClaims[];
}

function num(v: string | null | undefined): number | null {
  if (v === null || v === undefined || v === '') return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

export function parseJson<T>(v: string | null | undefined): T | null {
  if (!v) return null;
  try {
    return JSON.parse(v) as T;
  } catch {
    return null;
  }
}

/** JSON lines, each parsed; lines that do not parse (or that `keep` refuses) are left out. */
function jsonLines<T>(field: string | null | undefined, keep: (v: T) => boolean): T[] {
  return (field ?? '')
    .split('\n')
    .map((l) => parseJson<T>(l))
    .filter((v): v is T => v !== null && keep(v));
}

export function recordedAttempts(field: string | null | undefined): RecordedAttempt[] {
  return jsonLines<RecordedAttempt>(field, (r) => typeof r.a === 'number');
}

const CLAIM_FIELDS = ['iss', 'sub', 'aud', 'scope', 'jti', 'iat', 'nbf', 'exp', 'run', 'att', 'act'] as const;

/** The claims history (RUN_FIELDS.claims): only the known claim fields survive, whatever was stored. */
export function claimsOf(field: string | null | undefined): TokenClaims[] {
  return jsonLines<Record<string, unknown>>(field, (raw) => typeof raw === 'object')
    .map((raw) => Object.fromEntries(CLAIM_FIELDS.map((f) => [f, raw[f]])) as unknown as TokenClaims)
    .sort((a, b) => a.att - b.att || a.iat - b.iat);
}

/** The run `<job>:<id>` in `state`, from the fields of its hash that were read. */
export function runOf(job: string, id: string, state: RunState, hash: RunHash): Run {
  const meta = metaOf({ opts: parseJson<unknown>(hash.opts) });
  const name = hash.name ?? null;
  const finished = state === 'completed' || state === 'failed';
  const recorded = recordedAttempts(hash[RUN_FIELDS.attempts]);
  const timestamp = num(hash.timestamp);
  const startedAt = num(hash.processedOn);
  const attempts = num(hash.atm) ?? 0;
  const failedReason = hash.failedReason || null;
  return {
    runId: runIdOf(job, id),
    job,
    id,
    state,
    outcome: outcomeOf(state, hash[RUN_FIELDS.outcome]),
    trigger: (hash[RUN_FIELDS.trigger] || name || 'api') as Trigger,
    triggeredBy: triggeredByOf(meta, name),
    retriedBy: meta.retriedBy ?? null,
    parent: meta.parent ?? null,
    children: parseJson<string[]>(hash[RUN_FIELDS.children]) ?? [],
    shard: meta.shard ?? null,
    traceId: traceIdOf(meta.traceparent),
    attempts,
    priority: num(hash.priority) ?? 0,
    createdAt: timestamp,
    startedAt,
    firstStartedAt: recorded[0]?.start ?? startedAt,
    finishedAt: finished ? num(hash.finishedOn) : null,
    // A retry's backoff is counted from its failure, which the hash does not keep: only a run-later trigger has a known due time.
    dueAt: state === 'delayed' && attempts === 0 && timestamp !== null ? timestamp + (num(hash.delay) ?? 0) : null,
    data: parseJson<unknown>(hash.data || '{}'),
    progress: parseJson<unknown>(hash.progress || '0'),
    result: state === 'completed' ? (parseJson<unknown>(hash.returnvalue) ?? null) : null,
    // BullMQ keeps an earlier attempt's failedReason on a run that then completed: that was not the run's error (the
    // attempt rows of the Run page still show it).
    error: state === 'completed' ? null : failedReason === STALL_LIMIT_REASON ? stallLimitMessage() : failedReason,
    stacks: parseJson<string[]>(hash.stacktrace) ?? [],
    recorded,
    logMeta: hash[RUN_FIELDS.logMeta] ?? null,
    claims: claimsOf(hash[RUN_FIELDS.claims]),
  };
}

function iso(ms: number | null): string | null {
  return ms ? new Date(ms).toISOString() : null;
}

/** The run as the API, CLI and dashboard report it, with its log lines. */
export function runReport(run: Run, logs: string[]): RunReport {
  return {
    runId: run.runId,
    job: run.job,
    state: run.state,
    outcome: run.outcome,
    attempts: run.attempts,
    trigger: run.trigger,
    data: run.data,
    progress: run.progress,
    result: run.result,
    error: run.error,
    logs,
    createdAt: iso(run.createdAt),
    startedAt: iso(run.startedAt),
    finishedAt: iso(run.finishedAt),
    dueAt: iso(run.dueAt),
    priority: run.priority,
    triggeredBy: run.triggeredBy,
    retriedBy: run.retriedBy,
    parent: run.parent,
    children: run.children,
    shard: run.shard,
    traceId: run.traceId,
  };
}

/** A run as the Runs page lists it (no data, no result: those are on the Run page). */
export interface RunRow {
  runId: string;
  job: string;
  state: RunState;
  outcome: RunOutcome | null;
  trigger: string;
  triggeredBy: string | null;
  parent: string | null;
  shard: { index: number; total: number } | null;
  attempts: number;
  createdAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  /** From the first attempt's start to the end (retries and their backoff included). */
  durationMs: number | null;
  /** The first line of the run's error, shortened. */
  error: string | null;
}

export function firstLine(text: string | null | undefined, max = 300): string | null {
  if (!text) return null;
  const line = text.split('\n')[0];
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

export function runRow(run: Run): RunRow {
  const { finishedAt: end, firstStartedAt: start } = run;
  return {
    runId: run.runId,
    job: run.job,
    state: run.state,
    outcome: run.outcome,
    trigger: run.trigger,
    triggeredBy: run.triggeredBy,
    parent: run.parent,
    shard: run.shard,
    attempts: run.attempts,
    createdAt: iso(run.createdAt),
    startedAt: iso(run.startedAt),
    finishedAt: iso(end),
    durationMs: end && start ? Math.max(0, end - start) : null,
    error: firstLine(run.error),
  };
}

/** A row from an HMGET of ROW_FIELDS; null when the run's hash is gone. */
export function rowOf(job: string, id: string, state: RunState, values: readonly (string | null)[] | null | undefined): RunRow | null {
  const hash = hashOf(ROW_FIELDS, values);
  return hash && runRow(runOf(job, id, state, hash));
}
