// Types that cross module boundaries. Modules import their neighbours' types from here, not from each other.
import type { Got } from 'got';
import type { JobTokenClaims } from './token/verify.ts';

export type Trigger = 'manual' | 'schedule' | 'api' | 'retry' | 'parent' | 'misfire' | 'shard';
export type Overlap = 'queue' | 'skip' | 'replace';
export type Misfire = 'skip' | 'once';
/** How a finished run ended. Only `completed` is a success. */
export type RunOutcome = 'completed' | 'failed' | 'timeout' | 'cancelled' | 'skipped' | 'misfire';

export type Schedule = { cron: string; tz?: string } | { every: string | number };

export interface TokenSpec {
  /** The services this job's token is valid for (`aud`). At least one. */
  audience: string[];
  /** OAuth-style scopes, carried space-separated in the `scope` claim. */
  scope?: string[];
}

export interface BackoffSpec {
  type: 'fixed' | 'exponential';
  delay: number;
  jitter?: number;
}

/** What a `jobs/<name>.ts` file default-exports (through `defineJob`). */
export interface JobDefinition<Data = Record<string, unknown>, Result = unknown> {
  description?: string;
  schedule?: Schedule;
  /** JSON Schema for the run's `data`. */
  params?: Record<string, unknown>;
  token: TokenSpec;
  attempts?: number;
  backoff?: BackoffSpec;
  /** Duration string ('30s', '2m', '1h') or milliseconds. */
  timeout?: string | number;
  /** Cluster-wide limit of simultaneously active runs (default 1: serial). */
  concurrency?: number;
  /** Optional cap per worker process (never above `concurrency`). */
  concurrencyPerWorker?: number;
  /** Cluster-wide cap on run starts: at most `max` per `duration`. */
  rateLimit?: { max: number; duration: string | number };
  overlap?: Overlap;
  /** A scheduled fire that starts more than `misfireGrace` late: 'skip' it (default) or run it 'once'. */
  misfire?: Misfire;
  /** Duration; default '5s'. */
  misfireGrace?: string | number;
  /**
   * Start paused: applied once, when the job is first registered (scheduler sync); from then on `jobscope pause`/`resume`
   * decide, across restarts. What `jobscope import xxl-job` writes for a stopped xxl-job job.
   */
  paused?: boolean;
  /** Jobs started after a run succeeds: a name (data = this run's result) or { job, data: (result, run) => data }. */
  then?: (string | { job: string; data?(result: Result, run: RunInfo): unknown })[];
  /** Sharding broadcast: one trigger runs N shard runs (ctx.shard), or one per live worker serving the job. */
  shards?: number | 'workers';
  /** Only `jobscope worker --group <group>` processes run this job. */
  group?: string;
  /** Where and when to POST an alert (default webhook: JOBSCOPE_ALERT_WEBHOOK; default on: all four). */
  alert?: { webhook?: string; on?: AlertEvent[] };
  /** How many finished runs Redis keeps, and how long (default: JOBSCOPE_KEEP_COMPLETED / JOBSCOPE_KEEP_FAILED). */
  keep?: KeepSpec;
  run(ctx: JobContext<Data>): Promise<Result> | Result;
}

/** Retention of finished runs: at most `count` runs, none older than `age` (a duration, or milliseconds). */
export interface KeepSpec {
  completed?: { count?: number; age?: string | number };
  failed?: { count?: number; age?: string | number };
}

/** Retention as BullMQ takes it (`removeOnComplete`/`removeOnFail`): `age` in seconds; an absent field is no limit. */
export interface KeepRule {
  count?: number;
  age?: number;
}

/** Retention defaults (JOBSCOPE_KEEP_COMPLETED, JOBSCOPE_KEEP_FAILED, JOBSCOPE_KEEP_LOGS). */
export interface Retention {
  completed: KeepRule;
  failed: KeepRule;
  /** Log lines kept per run (JOBSCOPE_KEEP_LOGS). */
  logs: number;
}

export type AlertEvent = 'failed' | 'timeout' | 'misfire' | 'recovered';

/** One entry of `then`, normalised. */
export interface ThenStep {
  job: string;
  data?: (result: unknown, run: RunInfo) => unknown;
}

/** A loaded, validated job: its definition plus what the loader derived from it. */
export interface RegisteredJob {
  name: string;
  file: string;
  definition: JobDefinition;
  description: string;
  schedule?: Schedule;
  attempts: number;
  backoff?: BackoffSpec;
  timeoutMs?: number;
  concurrency: number;
  concurrencyPerWorker: number;
  rateLimit?: { max: number; durationMs: number };
  overlap: Overlap;
  misfire: Misfire;
  misfireGraceMs: number;
  then: ThenStep[];
  shards?: number | 'workers';
  group?: string;
  alert?: { webhook?: string; on: AlertEvent[] };
  /** The job's own `keep`, checked (ages in seconds): a rule given here replaces the default for those runs. */
  keep?: { completed?: KeepRule; failed?: KeepRule };
  /** The environment's retention defaults (JOBSCOPE_KEEP_*), set by the control plane; absent: the built-in ones. */
  retention?: Retention;
  audience: string[];
  scope: string[];
  /** Validates run data against `params`; returns the error list or null. */
  validate(data: unknown): ParamsIssue[] | null;
}

export interface ParamsIssue {
  path: string;
  message: string;
}

export interface RunInfo {
  id: string;
  job: string;
  /** 1-based attempt number. */
  attempt: number;
  trigger: Trigger;
  /** 'user:<login>', 'cli:<os user>', 'client', 'schedule', or 'run:<parent run id>'; after a Retry, who retried it. */
  triggeredBy: string;
  /** The run that started this one, if any. */
  parent?: string;
}

/** The claims of a run token: one definition, in the verifier, which must stay importable on its own. */
export type TokenClaims = JobTokenClaims;

/**
 * The run's tokens as the handler sees them: claims freely, a raw JWT only when asked for by name. A run holds one token
 * per service it calls (`aud` that service alone), minted on the first call; the first audience's is minted at the start.
 */
export interface RunToken {
  /** The claims of the token for the job's first audience. */
  readonly claims: TokenClaims;
  /** The claims of every token the run holds now. */
  readonly all: TokenClaims[];
  /** A raw JWT (default: the first audience's). Prefer `ctx.service()`/`ctx.http`, which attach the right one for you. */
  reveal(audience?: string): string;
}

/** Options of `ctx.trigger`/`ctx.triggerAndWait` (the API's, without `key` collisions across retries unless you set one). */
export type ChildTriggerOptions = TriggerOptions;

export interface JobContext<Data = Record<string, unknown>> {
  data: Data;
  run: RunInfo;
  log(line: string): Promise<void>;
  progress(value: number | object): Promise<void>;
  signal: AbortSignal;
  token: RunToken;
  service(name: string): Got;
  http: Got;
  /** A shard run's place in its broadcast (`shards`); null otherwise. */
  shard: { index: number; total: number } | null;
  /** Starts a run of another job (trigger 'parent', linked to this run); resolves with its run id. */
  trigger(job: string, data?: unknown, opts?: ChildTriggerOptions): Promise<string>;
  /**
   * Starts a run and waits for it: resolves with its result, rejects with ChildRunError if it ends any other way. This
   * run's timeout or cancel cancels it.
   */
  triggerAndWait<R = unknown>(job: string, data?: unknown, opts?: ChildTriggerOptions): Promise<R>;
  /**
   * Runs a process for this run (its own process group): output lines go to the run's log, a non-zero exit fails the
   * attempt (ExecFailedError), cancel/timeout/shutdown stop the group. Its environment carries JOBSCOPE_TOKEN (one
   * audience), JOBSCOPE_TOKEN_<SERVICE>, JOBSCOPE_SERVICE_<SERVICE>_URL, JOBSCOPE_RUN_ID, JOBSCOPE_SHARD_INDEX/_TOTAL.
   */
  exec(command: string, args?: string[], opts?: ExecOptions): Promise<ExecResult>;
}

export interface ExecOptions {
  cwd?: string;
  /** Added to the worker's environment (without jobscope's own JOBSCOPE_* and REDIS_URL). */
  env?: Record<string, string>;
  /** Written to the process's standard input (otherwise it gets none). */
  input?: string | Buffer;
  /** Between SIGTERM and SIGKILL when the run is aborted (default 5000 ms). */
  killGraceMs?: number;
}

export interface ExecResult {
  code: 0;
  /** The last lines of its standard output (tokens scrubbed). */
  stdout: string[];
}

export type RunState = 'waiting' | 'delayed' | 'active' | 'completed' | 'failed' | 'prioritized' | 'waiting-children' | 'unknown';

/** A run as the API, CLI and dashboard report it. Never contains a token. */
export interface RunReport {
  runId: string;
  job: string;
  state: RunState;
  /** How the run ended; null while it is not finished. */
  outcome: RunOutcome | null;
  attempts: number;
  trigger: Trigger;
  data: unknown;
  progress: unknown;
  result: unknown;
  error: string | null;
  logs: string[];
  createdAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  /** When a delayed run (trigger option delay/at, or a retry's backoff) becomes due. */
  dueAt: string | null;
  priority: number;
  /** 'user:<login>', 'cli:<os user>', 'client', 'schedule', or 'run:<parent run id>'. */
  triggeredBy: string | null;
  /** Who last pressed Retry on it ('user:<login>'); its attempts since then act for them. */
  retriedBy: string | null;
  /** The run that started this one, and the runs this one started. */
  parent: string | null;
  children: string[];
  /** A shard run's place in its broadcast. */
  shard: { index: number; total: number } | null;
  /** The run's trace (tracing on when it was triggered), for JOBSCOPE_TRACE_URL. */
  traceId: string | null;
}

/**
 * What a caller may ask of a trigger: the API body beside `data`, CLI flags, the dashboard form, createClient, ctx.trigger.
 * Exported by the package.
 */
export interface TriggerOptions {
  /** Run later: a duration ('30s', '5m') or milliseconds. Not with `at`. */
  delay?: string | number;
  /** Run at this time (ISO 8601). Not with `delay`. */
  at?: string;
  /** 1 (first) .. 2097152; without it, runs go first in first out before any prioritised run. */
  priority?: number;
  /** Idempotency: while a run triggered with this key is kept, the same key returns that run. */
  key?: string;
}

/**
 * Internal, not exported by the package: a trigger as the control plane takes it, the caller's options plus what only the API, CLI, runtime and tracing set.
 */
export interface TriggerRequest extends TriggerOptions {
  trigger?: Trigger;
  /** Who triggered it: 'user:<login>', 'cli:<os user>', 'client[:<name>]' (set by the API, CLI and client, not by callers' data). */
  by?: string;
  /** The run that triggers this one (ctx.trigger, then). */
  parent?: string;
  /** Set by tracing (trace.ts): the trigger span's W3C traceparent, kept in the run's options. */
  traceparent?: string;
}

/** A live token as listed by `GET /api/tokens` (metadata only). */
export interface LiveToken {
  jti: string;
  job: string;
  run: string;
  att: number;
  aud: string[];
  scope: string;
  exp: string;
}
