// ctx.exec: a process for the run (a GLUE script, a command-line tool). It runs in its own process group so cancel,
// timeout and shutdown stop everything it started (SIGTERM, then SIGKILL after a grace), its output lines reach the run's
// log as they come (tokens scrubbed), its exit code decides the attempt, and it gets the run's tokens in its environment,
// never in its argv (which every user of the machine can read in /proc/<pid>/cmdline or `ps`).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { ExecFailedError, ScopeError } from '../errors.ts';
import type { ExecOptions, ExecResult, JobContext } from '../interfaces.ts';
import { maskTokens, redactTokens } from '../redact.ts';
import type { RunScope } from '../token/scope.ts';
import { traceparentFor } from '../trace.ts';

/** How long a process group has between SIGTERM and SIGKILL. */
export const EXEC_KILL_GRACE_MS = 5000;
/** Lines of stderr quoted in the error of a failed process; lines of stdout kept in the result. */
const TAIL_LINES = 20;

/** What ctx.exec needs of its run, handed over by the worker. */
export interface ExecRun {
  scope: RunScope;
  shard: { index: number; total: number } | null;
  /** Every raw token of the run so far (the lease's list: it grows with re-mints). */
  raws: string[];
  /** Service name -> base URL (JOBSCOPE_SERVICES). */
  services: Readonly<Record<string, string>>;
  /** Appends one line to the run's log. */
  log(line: string): Promise<unknown>;
}

/** ctx.exec of one run. */
export function bindExec(run: ExecRun): JobContext['exec'] {
  return (command, args, opts) => execForRun(run, command, args, opts);
}

/** `orders-api` -> `ORDERS_API`: the part of an environment variable name that names a service. */
export function envName(service: string): string {
  return service.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

/**
 * jobscope's own configuration (its signing secret, Redis password, dashboard password) is not the script's business:
 * the process inherits the worker's environment without it.
 */
function inheritedEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('JOBSCOPE_') && k !== 'REDIS_URL') env[k] = v;
  return env;
}

/** The variables a run's process gets: one token per audience (minted through the run's lease), run id, shard, URLs. */
export async function runEnv(run: ExecRun): Promise<Record<string, string>> {
  const { run: info, tokens } = run.scope;
  const env: Record<string, string> = {
    JOBSCOPE_RUN_ID: info.id,
    JOBSCOPE_JOB: info.job,
    JOBSCOPE_ATTEMPT: String(info.attempt),
    JOBSCOPE_SHARD_INDEX: String(run.shard?.index ?? 0),
    JOBSCOPE_SHARD_TOTAL: String(run.shard?.total ?? 1),
  };
  for (const audience of tokens.audiences) {
    const token = await tokens.token(audience);
    env[`JOBSCOPE_TOKEN_${envName(audience)}`] = token.raw;
    if (tokens.audiences.length === 1) env.JOBSCOPE_TOKEN = token.raw;
    const url = run.services[audience];
    if (url) env[`JOBSCOPE_SERVICE_${envName(audience)}_URL`] = url;
  }
  // The process continues the run's trace (the OpenTelemetry convention for environment propagation).
  const traceparent = traceparentFor(run.scope.trace);
  if (traceparent) env.TRACEPARENT = traceparent;
  return env;
}

/** Sends a signal to a whole process group; a group already gone is not an error. */
function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** Runs `command` for the run; resolves on exit code 0, rejects with ExecFailedError, or with the abort reason. */
export async function execForRun(run: ExecRun, command: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
  const { signal } = run.scope;
  if (signal.aborted) throw signal.reason;
  if (!run.scope.open) throw new ScopeError(`run ${run.scope.run.id} has ended: it cannot start processes`);
  const env = await runEnv(run);
  const secrets = () => run.raws;
  if ([command, ...args].some((a) => secrets().some((t) => a.includes(t)))) {
    throw new ScopeError('ctx.exec: a token in argv is readable by every user of the machine; the process reads it from $JOBSCOPE_TOKEN');
  }
  const child = spawn(command, args, {
    cwd: opts.cwd,
    env: { ...inheritedEnv(), ...opts.env, ...env },
    detached: true,
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  const clean = (line: string) => maskTokens(redactTokens(line, secrets()));
  // Log writes are chained so lines are stored in the order they were read.
  let logged: Promise<unknown> = Promise.resolve();
  const stdoutTail: string[] = [];
  const stderrTail: string[] = [];
  const follow = (stream: import('node:stream').Readable, tail: string[], prefix: string) =>
    new Promise<void>((resolve) => {
      const lines = createInterface({ input: stream, crlfDelay: Infinity });
      lines.on('line', (raw) => {
        const line = clean(raw);
        tail.push(line);
        if (tail.length > TAIL_LINES) tail.shift();
        logged = logged.then(() => run.log(prefix + line)).catch(() => undefined);
      });
      lines.once('close', resolve);
    });
  const outputs = Promise.all([follow(child.stdout!, stdoutTail, ''), follow(child.stderr!, stderrTail, '[stderr] ')]);
  if (opts.input !== undefined && child.stdin) {
    child.stdin.on('error', () => undefined); // a process that exits without reading its input
    child.stdin.end(opts.input);
  }
  const exit = await waitExit(child, signal, opts.killGraceMs ?? EXEC_KILL_GRACE_MS);
  // Whatever the process left behind in its group ends with it: a run's processes do not outlive the run.
  if (child.pid) signalGroup(child.pid, 'SIGKILL');
  // A process that left its group (setsid) may still hold the pipes: stop reading after a moment.
  await Promise.race([outputs, new Promise((r) => setTimeout(r, 2000).unref())]);
  await logged;
  if (exit.spawnError) throw new ExecFailedError(command, null, null, [clean(exit.spawnError.message)]);
  if (signal.aborted) throw signal.reason;
  if (exit.code !== 0) throw new ExecFailedError(command, exit.code, exit.signal, stderrTail);
  return { code: 0, stdout: stdoutTail };
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  spawnError?: Error;
}

/** Waits for the process to exit; an abort of the run sends SIGTERM to its group, then SIGKILL after the grace. */
function waitExit(child: import('node:child_process').ChildProcess, signal: AbortSignal, graceMs: number): Promise<Exit> {
  return new Promise((resolve) => {
    let killer: NodeJS.Timeout | undefined;
    const stop = () => {
      if (!child.pid) return;
      signalGroup(child.pid, 'SIGTERM');
      killer = setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), graceMs);
    };
    signal.addEventListener('abort', stop, { once: true });
    const done = (exit: Exit) => {
      signal.removeEventListener('abort', stop);
      clearTimeout(killer);
      resolve(exit);
    };
    child.once('error', (err) => done({ code: null, signal: null, spawnError: err }));
    child.once('exit', (code, sig) => done({ code, signal: sig }));
  });
}
