// One execution of an admitted attempt in this process: the run's token lease, its abort controller and timeout, the scope
// the handler runs in, and the race between the handler and an abort. Every way a run is aborted (timeout, cancel,
// shutdown, lost lock) goes through abort(): it aborts ctx.signal, closes the scope and revokes the tokens at once (even
// while a handler that ignores its signal goes on running), and ends the wait for the handler.
import { RunCancelledError, RunTimeoutError, type LockLostError } from '../errors.ts';
import type { RedisKeys } from '../run/redis-keys.ts';
import { parseRunId } from '../run/model.ts';
import { redactValue } from '../redact.ts';
import { RunTokenLease, type LeaseHooks } from '../token/lease.ts';
import { tokenLifetime, type MintedToken, type TokenMinter } from '../token/mint.ts';
import { runInScope, type RunScope, type RunTokens } from '../token/scope.ts';
import type { RunInfo } from '../interfaces.ts';
import { attemptSpan } from '../trace.ts';
import type { Attempt, AttemptHost } from './attempt.ts';
import { RunContext, type ContextParts } from './context.ts';

/** Aborts the runs still active at the shutdown deadline, so they are handed back. */
export class ShutdownError extends Error {
  constructor() {
    super('the worker shut down before the run finished; the run goes back to the queue');
    this.name = 'ShutdownError';
  }
}

/** The RFC 8693 actor claim for who triggered a run: a person, the CLI, a client, or a parent run (its job and run id). */
export function actorOf(by: string | undefined): { sub: string; run?: string } | undefined {
  if (!by || by === 'schedule') return undefined;
  if (by.startsWith('run:')) {
    const parent = by.slice(4);
    return { sub: `job:${parseRunId(parent).job}`, run: parent };
  }
  return { sub: by };
}

/** What an execution needs beyond its attempt. */
export interface ExecutionParts extends ContextParts {
  minter: TokenMinter;
  keys: RedisKeys;
  tokenMaxLifetimeMs: number;
  /** How long an aborted handler may go on before it is reported as a runaway. */
  runawayGraceMs: number;
  /** Where token events and runaways are reported (the run executor). */
  events: Pick<AttemptHost, 'emit'>;
}

/** How the handler ended: its (token-free) result, or why it did not return one: the abort's reason, else what it threw. */
export type Settled = { returned: true; result: unknown } | { returned: false; reason: unknown; thrown: unknown };

export class Execution implements LeaseHooks {
  private readonly attempt: Attempt;
  private readonly parts: ExecutionParts;
  private readonly lease: RunTokenLease;
  /** ctx.signal's controller, made on first use: most handlers never read ctx.signal (an AbortController costs ~6 us). */
  private controller: AbortController | undefined;
  /** Why the execution was aborted: set once, by abort(). */
  private abortReason: Error | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  /** Ends the wait for the handler (run()): with the handler's settling, or with an abort, whichever comes first. */
  private finish: ((settled: Settled) => void) | undefined;
  private scope: RunScope | undefined;
  private handler: Promise<unknown> | undefined;
  /** The revocation an abort started: settles once every token of the execution is revoked (or could not be). */
  private revoking: Promise<void> | undefined;

  /**
   * `lock`: the BullMQ lock this execution holds (its tokens are registered only while it does).
   */
  constructor(attempt: Attempt, lock: string | undefined, parts: ExecutionParts) {
    const { job, run, bullJob, meta } = attempt;
    this.attempt = attempt;
    this.parts = parts;
    // Tracing (trace.ts): the run's and this attempt's spans, from the lease on.
    attempt.span = attemptSpan(run, meta.traceparent);
    this.lease = new RunTokenLease(
      parts.minter,
      {
        job: job.name,
        run: run.id,
        attempt: run.attempt,
        audience: job.audience,
        scope: job.scope,
        lifetimeMs: tokenLifetime(job.timeoutMs, parts.tokenMaxLifetimeMs),
        act: actorOf(meta.retriedBy ?? meta.by),
      },
      attempt.log,
      this,
      lock ? { key: parts.keys.bullLock(job.name, bullJob.id!), token: lock } : undefined,
    );
    this.timer = job.timeoutMs ? setTimeout(() => this.abort(new RunTimeoutError(job.timeoutMs!)), job.timeoutMs) : undefined;
  }

  /** The run was cancelled (the executor heard the cancel broadcast, or heard it while the attempt was admitted). */
  cancel(reason: string): void {
    this.abort(new RunCancelledError(reason));
  }

  // The lease's hooks (LeaseHooks): methods of the execution, not closures made per execution.
  /** A token of the execution became live. */
  minted(token: MintedToken): void {
    this.parts.events.emit('token:minted', { job: this.attempt.job.name, jti: token.claims.jti });
  }

  /** A token of the execution was revoked. */
  revoked(jti: string): void {
    this.parts.events.emit('token:revoked', { job: this.attempt.job.name, jti });
  }

  /** A mint was refused: the execution lost its run's lock. */
  lost(err: LockLostError): void {
    this.abort(err);
  }

  /** Has this execution been aborted (and its tokens revoked)? */
  get wasAborted(): boolean {
    return this.abortReason !== undefined;
  }

  /** The run's abort signal (ctx.signal, the service clients'), aborted at once when the execution already was. */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortReason) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** The token values this execution handed out (grows with re-mints): what its recorded error is redacted of. */
  get raws(): string[] {
    return this.lease.raws;
  }

  /** Aborts the execution (see the file's head); a second abort changes nothing. */
  abort(reason: Error): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
    if (this.scope) this.scope.open = false;
    this.revoking = this.lease
      .close()
      .catch((err: Error) => this.attempt.log.error({ err: err.message }, 'could not revoke the run token; it dies at its expiry'));
    this.finish?.({ returned: false, reason, thrown: reason });
  }

  /**
   * Settles once the tokens an abort revoked are revoked in Redis (at once if not aborted). A shutdown hands its run back
   * only after it: a request of this execution verified after another worker took the run is then refused.
   */
  revocation(): Promise<void> {
    return this.revoking ?? Promise.resolve();
  }

  /** Mints the run's first token and runs the handler in its scope, until it settles or the execution is aborted. */
  async run(shuttingDown: boolean): Promise<Settled> {
    const { attempt, lease } = this;
    if (shuttingDown) this.abort(new ShutdownError());
    attempt.started();
    try {
      await lease.start();
      const scope = new ExecutionScope(this, attempt.run, lease, attempt.span?.context);
      this.scope = scope;
      const ctx = new RunContext(attempt, scope, lease.raws, this.parts);
      const handler = runInScope(scope, async () => attempt.job.definition.run(ctx));
      this.handler = handler;
      const settled = await new Promise<Settled>((resolve) => {
        // Aborted meanwhile: the wait ends now (the handler goes on, without a token, until settle()).
        if (this.abortReason) return resolve({ returned: false, reason: this.abortReason, thrown: this.abortReason });
        this.finish = resolve;
        handler.then(
          (result) => resolve({ returned: true, result }),
          (err: unknown) => resolve({ returned: false, reason: this.abortReason ?? err, thrown: err }),
        );
      });
      this.finish = undefined;
      return settled.returned ? { returned: true, result: redactValue(settled.result, lease.raws) } : settled;
    } catch (err) {
      return { returned: false, reason: this.abortReason ?? err, thrown: err };
    }
  }

  /**
   * After an abort, waits for the handler to settle, at most the runaway grace: an aborted handler keeps its slot (the run
   * stays active) until it settles, so real work never exceeds concurrency. Past the grace, reports a runaway.
   */
  async settle(): Promise<void> {
    const { handler, attempt } = this;
    if (!handler || !this.wasAborted) return;
    const graceMs = this.parts.runawayGraceMs;
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), graceMs)));
    const settled = handler.then(
      () => 'settled' as const,
      () => 'settled' as const,
    );
    try {
      if ((await Promise.race([settled, graceOver])) === 'late') {
        attempt.log.error(
          { graceMs },
          'runaway: the handler ignored ctx.signal and is still running (without a token); its concurrency slot is released',
        );
        this.parts.events.emit('run:runaway', { job: attempt.job.name, runId: attempt.run.id, attempt: attempt.run.attempt });
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Ends the execution: the scope closes, and the tokens are revoked even when the handler still runs (its calls fail).
   * Resolves once the revocation is written to the token store's connection (TokenStore.written), not when Redis answers:
   * the run's completion goes on that same connection after it (the run executor checks they are one), so Redis revokes
   * the tokens before the run counts as ended, and the run does not wait a round trip for it. A revocation Redis refuses
   * is logged: the token dies at its expiry, as it did when this waited for the answer.
   */
  close(): Promise<void> {
    if (this.scope) this.scope.open = false;
    this.attempt.span?.close();
    clearTimeout(this.timer);
    this.lease
      .close()
      .catch((err: Error) => this.attempt.log.error({ err: err.message }, 'could not revoke the run token; it dies at its expiry'));
    return this.parts.minter.store.written();
  }
}

/** The scope of one execution's handler: open until the execution ends; its signal is the execution's, made when read. */
class ExecutionScope implements RunScope {
  readonly run: RunInfo;
  readonly tokens: RunTokens;
  readonly trace: RunScope['trace'];
  open: boolean;
  private readonly execution: Execution;

  constructor(execution: Execution, run: RunInfo, tokens: RunTokens, trace: RunScope['trace']) {
    this.execution = execution;
    this.run = run;
    this.tokens = tokens;
    this.trace = trace;
    this.open = !execution.wasAborted;
  }

  get signal(): AbortSignal {
    return this.execution.signal;
  }
}
