// Error types carry meaning: callers (CLI, HTTP server, worker) branch on the class and its `code`, not on message text.

export class JobscopeError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad environment configuration. */
export class ConfigError extends JobscopeError {
  constructor(message: string) {
    super('ERR_CONFIG', message);
  }
}

/** One mistake of a definition: the field (none: the file as a whole) and the fix. */
export interface DefinitionProblem {
  field: string | undefined;
  problem: string;
}

/**
 * A job file that is not a valid definition: names the file (and line, for a file that cannot be loaded), the field and the
 * fix. A definition with several mistakes names them all (`problems`; one line each in the message, the first as `field`).
 */
export class JobDefinitionError extends JobscopeError {
  readonly file: string;
  readonly field: string | undefined;
  readonly line: number | undefined;
  readonly problems: DefinitionProblem[];
  constructor(
    file: string,
    field: string | undefined,
    problem: string,
    at?: { line: number; column?: number },
    more: DefinitionProblem[] = [],
  ) {
    const where = at ? `${file}:${at.line}${at.column ? `:${at.column}` : ''}` : file;
    const problems = [{ field, problem }, ...more];
    super('ERR_JOB_DEFINITION', problems.map((p) => `${where}: ${p.field ? `${p.field}: ` : ''}${p.problem}`).join('\n'));
    this.file = file;
    this.field = field;
    this.line = at?.line;
    this.problems = problems;
  }
}

/** Every bad file of a jobs folder at once (`errors`, one per file), so one start-up shows all there is to fix. */
export class JobFilesError extends JobscopeError {
  readonly errors: JobDefinitionError[];
  constructor(errors: JobDefinitionError[]) {
    super(
      'ERR_JOB_FILES',
      errors.length === 1
        ? errors[0]!.message
        : `${errors.length} job files need fixing:\n${errors.map((e) => e.message.replace(/^/gm, '  ')).join('\n')}`,
    );
    this.errors = errors;
  }
}

/** This prefix of this Redis already holds another project's jobs (control/project.ts). */
export class ProjectConflictError extends JobscopeError {
  readonly owner: string;
  constructor(message: string, owner: string) {
    super('ERR_PROJECT_CONFLICT', message);
    this.owner = owner;
  }
}

export class UnknownJobError extends JobscopeError {
  constructor(name: string, known: string[]) {
    super('ERR_UNKNOWN_JOB', `unknown job "${name}"; known jobs: ${known.join(', ') || '(none)'}`);
  }
}

export class UnknownRunError extends JobscopeError {
  constructor(runId: string) {
    super('ERR_UNKNOWN_RUN', `unknown run "${runId}" (run ids look like <job>:<id>)`);
  }
}

export class ParamsError extends JobscopeError {
  readonly issues: { path: string; message: string }[];
  constructor(job: string, issues: { path: string; message: string }[]) {
    super('ERR_PARAMS', `invalid data for job "${job}": ${issues.map((i) => `${i.path || '/'} ${i.message}`).join('; ')}`);
    this.issues = issues;
  }
}

/** A trigger refused because the job has `overlap: 'skip'` and a run is already waiting, delayed, active or retrying. */
export class OverlapSkippedError extends JobscopeError {
  /** The run that blocks this one. */
  readonly blocking: string;
  constructor(job: string, blocking: string) {
    super(
      'ERR_OVERLAP_SKIPPED',
      `job "${job}" has overlap: 'skip' and a run is already waiting, delayed, active or waiting for a retry: ${blocking}`,
    );
    this.blocking = blocking;
  }
}

/** Trigger options that cannot be honoured (delay and at together, a time in the past, a bad priority or key). */
export class TriggerOptionsError extends JobscopeError {
  /** The option at fault (the messages start with it: `delay: ...`); undefined for a problem of several. */
  readonly param: string | undefined;
  constructor(message: string) {
    super('ERR_TRIGGER_OPTIONS', message);
    this.param = /^(\w+): /.exec(message)?.[1];
  }
}

/**
 * How the HTTP API answers an error of this module: its status and the snake_case code of the `{ error, message }` body
 * (the one code style of every HTTP answer, as the verifier's `expired`, `revoked`; the table is in the README).
 */
export const HTTP_ERRORS: Record<string, { status: number; error: string }> = {
  ERR_PARAMS: { status: 400, error: 'invalid_params' },
  ERR_TRIGGER_OPTIONS: { status: 400, error: 'bad_request' },
  ERR_UNKNOWN_JOB: { status: 404, error: 'unknown_job' },
  ERR_UNKNOWN_RUN: { status: 404, error: 'unknown_run' },
  ERR_OVERLAP_SKIPPED: { status: 409, error: 'overlap_skipped' },
  ERR_RUN_FINISHED: { status: 409, error: 'run_finished' },
};

/** `ctx.service()`/`ctx.http` used outside a run, or an unknown service name. */
export class ScopeError extends JobscopeError {
  constructor(message: string) {
    super('ERR_NO_RUN_SCOPE', message);
  }
}

export class UnknownServiceError extends JobscopeError {
  constructor(name: string, known: string[]) {
    super(
      'ERR_UNKNOWN_SERVICE',
      `unknown service "${name}"; known services: ${known.join(', ') || '(none: set JOBSCOPE_SERVICES=name=url,...)'}`,
    );
  }
}

/** The run exceeded its `timeout`. */
export class RunTimeoutError extends JobscopeError {
  constructor(ms: number) {
    super('ERR_RUN_TIMEOUT', `run timed out after ${ms} ms`);
  }
}

export class RunCancelledError extends JobscopeError {
  constructor(reason: string) {
    super('ERR_RUN_CANCELLED', `run cancelled: ${reason}`);
  }
}

/** A scheduled fire not run: overlap 'skip' found another run, or its schedule is gone from the code. */
export class RunSkippedError extends JobscopeError {
  constructor(reason: string) {
    super('ERR_RUN_SKIPPED', `skipped: ${reason}`);
  }
}

/** A scheduled fire that started later than `misfireGrace` after its due time, with `misfire: 'skip'`. */
export class RunMisfireError extends JobscopeError {
  constructor(lateMs: number, graceMs: number) {
    super(
      'ERR_RUN_MISFIRE',
      `misfire: the fire started ${(lateMs / 1000).toFixed(1)} s after its due time (misfireGrace ${graceMs / 1000} s)`,
    );
  }
}

/** This execution no longer holds its run: BullMQ gave the run to another worker (a stall past the lock, a partition). */
export class LockLostError extends JobscopeError {
  constructor(runId: string) {
    super('ERR_LOCK_LOST', `run ${runId}: this execution lost its lock; another worker runs it now`);
  }
}

/** A run started with ctx.triggerAndWait ended without completing. */
export class ChildRunError extends JobscopeError {
  readonly runId: string;
  readonly outcome: string;
  constructor(runId: string, outcome: string, error: string | null) {
    super('ERR_CHILD_RUN', `run ${runId} ended ${outcome}${error ? `: ${error}` : ''}`);
    this.runId = runId;
    this.outcome = outcome;
  }
}

/** Waiting for a run ended before the run did. */
export class RunWaitTimeoutError extends JobscopeError {
  readonly state: string;
  constructor(runId: string, state: string, timeoutMs: number) {
    super('ERR_RUN_WAIT_TIMEOUT', `run ${runId} is still ${state} after ${timeoutMs} ms`);
    this.state = state;
  }
}

/** How a finished run ended, in words after "has already". */
const ENDED: Record<string, string> = {
  completed: 'completed',
  failed: 'failed',
  cancelled: 'been cancelled',
  timeout: 'timed out',
  skipped: 'been skipped',
  misfire: 'misfired',
};

/** Cancel of a run that has already finished; `outcome` is how it ended (completed, failed, cancelled, timeout, ...). */
export class RunFinishedError extends JobscopeError {
  constructor(runId: string, outcome: string) {
    super('ERR_RUN_FINISHED', `run ${runId} has already ${ENDED[outcome] ?? 'finished'}; nothing to cancel`);
  }
}

/** A process started with ctx.exec ended with a non-zero exit code or a signal: the attempt fails with its last stderr lines. */
export class ExecFailedError extends JobscopeError {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stderr: string[];
  constructor(command: string, exitCode: number | null, signal: string | null, stderr: string[]) {
    const how = exitCode !== null ? `exited with code ${exitCode}` : signal ? `was killed by ${signal}` : 'could not be started';
    super('ERR_EXEC_FAILED', `${command} ${how}${stderr.length ? `:\n${stderr.slice(-10).join('\n')}` : ''}`);
    this.exitCode = exitCode;
    this.signal = signal;
    this.stderr = stderr;
  }
}
