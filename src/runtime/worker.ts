// Workers: one BullMQ Worker per job. Each attempt mints its own token, runs the handler inside that token's scope, and
// revokes the token in `finally` whatever happened (return, throw, timeout, cancel, shutdown).
import { EventEmitter, setMaxListeners } from 'node:events';
import { inspect } from 'node:util';
import { UnrecoverableError, Worker, type Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { ParamsError, RunCancelledError, RunTimeoutError } from '../errors.ts';
import type { JobContext, RegisteredJob, RunInfo, RunToken, Trigger } from '../interfaces.ts';
import type { Registry } from '../jobs/registry.ts';
import type { Logger } from '../log.ts';
import type { ServiceClients } from '../http/clients.ts';
import { tokenLifetime, type MintedToken, type TokenMinter } from '../token/mint.ts';
import { redactTokens, runInScope, type RunScope } from '../token/scope.ts';
import { runIdOf, type Queues } from './queues.ts';

export interface WorkerDeps {
  registry: Registry;
  queues: Queues;
  minter: TokenMinter;
  clients: ServiceClients;
  /** Connection BullMQ workers are built from (maxRetriesPerRequest: null). */
  connection: Redis;
  /** A dedicated connection for the cancel broadcast (a subscribed connection can do nothing else). */
  subscriber: Redis;
  prefix: string;
  tokenMaxLifetimeMs: number;
  logger: Logger;
  /** Only run these jobs (default: all). */
  only?: string[];
}

export type RunOutcome = 'completed' | 'failed' | 'timeout' | 'cancelled' | 'skipped';

export interface RunEvents {
  'run:start': [{ job: string; runId: string; attempt: number }];
  'run:end': [{ job: string; runId: string; attempt: number; outcome: RunOutcome; durationMs: number }];
  'token:minted': [{ job: string; jti: string }];
  'token:revoked': [{ job: string; jti: string }];
}

class ShutdownError extends Error {
  constructor() {
    super('the worker shut down before the run finished');
    this.name = 'ShutdownError';
  }
}

/** Rejects as soon as the signal aborts, so a handler that ignores ctx.signal cannot keep its token alive. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** When a scheduler-made run was due: the millis that end its id (`repeat:<scheduler>:<millis>`). */
function fireTime(bullJob: Job): number {
  const m = /:(\d+)$/.exec(bullJob.id ?? '');
  return m ? Number(m[1]) : bullJob.timestamp;
}

/** Was another run of the queue active at `t`? (Still active, or the latest finished run spans `t`.) */
async function busyAt(queue: Queue, t: number, selfId: string | undefined): Promise<boolean> {
  if ((await queue.getActiveCount()) > 1) return true;
  // The newest finished run of each kind (getJobs takes the range per state), whichever finished last.
  const finished = await queue.getJobs(['completed', 'failed'], 0, 0, false);
  const last = finished.filter(Boolean).sort((a, b) => (b.finishedOn ?? 0) - (a.finishedOn ?? 0))[0];
  return Boolean(last && last.id !== selfId && (last.processedOn ?? Infinity) <= t && (last.finishedOn ?? 0) > t);
}

function redactValue<T>(value: T, tokens: string[]): T {
  if (value === undefined) return null as T;
  const text = JSON.stringify(value);
  if (text === undefined) return null as T;
  const redacted = redactTokens(text, tokens);
  return redacted === text ? value : (JSON.parse(redacted) as T);
}

/** The error BullMQ records: token-free, and unrecoverable when retrying cannot help (cancel, bad data). */
function recordedError(err: unknown, signal: AbortSignal, tokens: string[]): Error {
  const reason: unknown = signal.aborted ? signal.reason : err;
  const message = redactTokens(reason instanceof Error ? reason.message : String(reason), tokens);
  const out =
    reason instanceof RunCancelledError || err instanceof UnrecoverableError ? new UnrecoverableError(message) : new Error(message);
  if (reason instanceof Error) {
    out.name = reason.name;
    out.stack = redactTokens(reason.stack ?? message, tokens);
  }
  return out;
}

/** `ctx.token`: the scope's current token (re-mints included). Prints and serialises as its claims only. */
class ScopedToken implements RunToken {
  readonly #scope: RunScope;
  constructor(scope: RunScope) {
    this.#scope = scope;
  }
  get claims() {
    return this.#scope.token.claims;
  }
  reveal(): string {
    return this.#scope.token.raw;
  }
  toJSON() {
    return { claims: this.claims };
  }
  [inspect.custom]() {
    return `RunToken ${inspect(this.claims)}`;
  }
}

export class Workers extends EventEmitter<RunEvents> {
  readonly workers = new Map<string, Worker>();
  private readonly deps: WorkerDeps;
  private readonly shutdown = new AbortController();

  constructor(deps: WorkerDeps) {
    super();
    this.deps = deps;
    // Every active run listens for shutdown: with high concurrency that is more than the default 10 listeners.
    setMaxListeners(0, this.shutdown.signal);
  }

  async start(): Promise<void> {
    const { registry, connection, prefix, logger, subscriber, queues } = this.deps;
    for (const name of this.deps.only ?? registry.names) {
      const job = registry.get(name);
      const worker = new Worker(name, (bullJob: Job, _lock?: string, signal?: AbortSignal) => this.attempt(job, bullJob, signal), {
        connection,
        prefix,
        concurrency: job.concurrency,
      });
      worker.on('error', (err) => logger.error({ job: name, err: err.message }, 'worker error'));
      this.workers.set(name, worker);
    }
    subscriber.on('message', (channel, message) => {
      if (channel !== queues.cancelChannel) return;
      try {
        const { job, id, reason } = JSON.parse(message) as { job: string; id: string; reason?: string };
        if (this.workers.get(job)?.cancelJob(id, reason ?? 'cancelled')) {
          logger.info({ job, run: runIdOf(job, id) }, 'run cancel requested');
        }
      } catch {
        logger.warn('ignored a malformed cancel message');
      }
    });
    await subscriber.subscribe(queues.cancelChannel);
    await Promise.all([...this.workers.values()].map((w) => w.waitUntilReady()));
  }

  /** One attempt of one run. */
  async attempt(job: RegisteredJob, bullJob: Job, bullSignal?: AbortSignal): Promise<unknown> {
    const { minter, clients, queues, logger, tokenMaxLifetimeMs } = this.deps;
    const attempt = bullJob.attemptsMade + 1;
    const origin = (bullJob.name || 'api') as Trigger;
    const run: RunInfo = { id: runIdOf(job.name, bullJob.id), job: job.name, attempt, trigger: attempt > 1 ? 'retry' : origin };
    const log = logger.child({ job: job.name, run: run.id, attempt });
    const started = Date.now();
    const end = (outcome: RunOutcome) =>
      this.emit('run:end', { job: job.name, runId: run.id, attempt, outcome, durationMs: Date.now() - started });

    // Data may come from Bull Board's "Add job" or an older schema: the handler only ever sees valid data. (BullMQ parses
    // the data afresh for each attempt, so validation's defaults never leak into the stored job.)
    const data = (bullJob.data ?? {}) as Record<string, unknown>;
    const issues = job.validate(data);
    if (issues) {
      end('failed');
      throw new UnrecoverableError(new ParamsError(job.name, issues).message);
    }
    if (origin === 'schedule' && job.overlap === 'skip' && (await busyAt(queues.queue(job.name), fireTime(bullJob), bullJob.id))) {
      await bullJob.log('skipped: another run of this job is active (overlap: skip)');
      end('skipped');
      return { skipped: true, reason: 'another run was active (overlap: skip)' };
    }
    if (origin === 'schedule' && job.overlap === 'replace') await queues.cancelAll(job.name, 'replaced by a scheduled run', bullJob.id);

    const controller = new AbortController();
    const abort = (reason: Error) => controller.abort(reason);
    const onCancel = () => abort(new RunCancelledError(String(bullSignal?.reason ?? 'cancelled')));
    const onShutdown = () => abort(new ShutdownError());
    bullSignal?.addEventListener('abort', onCancel, { once: true });
    this.shutdown.signal.addEventListener('abort', onShutdown, { once: true });
    const timer = job.timeoutMs ? setTimeout(() => abort(new RunTimeoutError(job.timeoutMs!)), job.timeoutMs) : undefined;

    const lifetimeMs = tokenLifetime(job.timeoutMs, tokenMaxLifetimeMs);
    const mintReq = { job: job.name, run: run.id, attempt, audience: job.audience, scope: job.scope, lifetimeMs };
    const raws: string[] = [];
    const live = new Set<string>();
    const track = (t: MintedToken) => {
      raws.push(t.raw);
      live.add(t.claims.jti);
      this.emit('token:minted', { job: job.name, jti: t.claims.jti });
      return t;
    };
    const revoke = async (jti: string) => {
      live.delete(jti);
      await minter.revoke(jti);
      this.emit('token:revoked', { job: job.name, jti });
    };

    let scope: RunScope | undefined;
    let remint: NodeJS.Timeout | undefined;
    // Re-mint before expiry when a run outlives its token (no timeout, or one longer than the lifetime cap). Timed from
    // the token's actual exp: exp is floored to whole seconds, so it can come up to 1 s before mint time + lifetime.
    const marginMs = Math.min(60_000, lifetimeMs / 5);
    const scheduleRemint = (retryInMs?: number) => {
      const remainingMs = scope ? scope.token.claims.exp * 1000 - Date.now() : lifetimeMs;
      remint = setTimeout(
        async () => {
          try {
            const next = track(await minter.mint(mintReq));
            if (!scope?.open) return void (await revoke(next.claims.jti));
            const old = scope.token;
            scope.token = next;
            // Requests sent with the old token a moment ago may still be in verification downstream: revoke it shortly
            // after (it has marginMs left; no new request carries it). `finally` revokes it at once if the run ends first.
            const oldJti = old.claims.jti;
            setTimeout(
              () => {
                if (live.has(oldJti))
                  revoke(oldJti).catch((err: Error) => log.error({ err: err.message }, 'could not revoke a re-minted token'));
              },
              Math.min(5000, marginMs / 2),
            ).unref();
            log.info({ jti: next.claims.jti }, 'token re-minted for a long run');
            scheduleRemint();
          } catch (err) {
            log.error({ err: (err as Error).message }, 'could not re-mint the run token; retrying');
            // Try again while the current token still has time left, rather than let the run run out of it.
            if (scope?.open) scheduleRemint(1000);
          }
        },
        retryInMs ?? Math.max(100, remainingMs - marginMs),
      );
      remint.unref();
    };

    this.emit('run:start', { job: job.name, runId: run.id, attempt });
    log.info({ trigger: run.trigger }, 'run started');
    try {
      const token = track(await minter.mint(mintReq));
      scope = { run, signal: controller.signal, token, open: true };
      scheduleRemint();
      const ctx = this.context(scope, data, bullJob, raws, clients);
      const result = redactValue(
        await Promise.race([runInScope(scope, async () => job.definition.run(ctx)), untilAborted(controller.signal)]),
        raws,
      );
      log.info({ ms: Date.now() - started }, 'run completed');
      end('completed');
      return result;
    } catch (err) {
      const recorded = recordedError(err, controller.signal, raws);
      const reason = controller.signal.reason as unknown;
      const outcome: RunOutcome =
        reason instanceof RunTimeoutError ? 'timeout' : reason instanceof RunCancelledError ? 'cancelled' : 'failed';
      log.warn({ ms: Date.now() - started, outcome, error: recorded.message }, 'run failed');
      end(outcome);
      throw recorded;
    } finally {
      if (scope) scope.open = false;
      clearTimeout(timer);
      clearTimeout(remint);
      bullSignal?.removeEventListener('abort', onCancel);
      this.shutdown.signal.removeEventListener('abort', onShutdown);
      // Revoke even when the handler is still running in the background (it ignored the abort): its calls now fail.
      await Promise.all([...live].map((jti) => revoke(jti))).catch((err: Error) =>
        log.error({ err: err.message }, 'could not revoke the run token; it dies at its expiry'),
      );
    }
  }

  private context(scope: RunScope, data: Record<string, unknown>, bullJob: Job, raws: string[], clients: ServiceClients): JobContext {
    const token = new ScopedToken(scope);
    const services = new Map<string, ReturnType<ServiceClients['service']>>();
    let http: ReturnType<ServiceClients['http']> | undefined;
    return {
      data,
      run: scope.run,
      signal: scope.signal,
      token,
      log: async (line: string) => {
        await bullJob.log(redactTokens(String(line), raws));
      },
      progress: async (value: number | object) => {
        await bullJob.updateProgress(redactValue(value, raws));
      },
      service: (name: string) => {
        let client = services.get(name);
        if (!client) services.set(name, (client = clients.service(name, scope.run.id, scope.signal)));
        return client;
      },
      get http() {
        return (http ??= clients.http(scope.run.id, scope.signal));
      },
    };
  }

  /** Stops taking work; lets active runs finish until the deadline, then aborts them (their tokens are revoked). */
  async close(deadlineMs: number): Promise<void> {
    const abortRuns = setTimeout(() => this.shutdown.abort(), deadlineMs);
    // BullMQ's close can wait forever on a blocking connection caught in its reconnect back-off (after a Redis restart):
    // past the deadline and a grace for aborted runs to record their outcome, shutdown goes on without it.
    let giveUp: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (giveUp = setTimeout(() => resolve('late'), deadlineMs + 3000)));
    try {
      const closed = Promise.all([...this.workers.values()].map((w) => w.close())).then(() => 'closed' as const);
      if ((await Promise.race([closed, late])) === 'late') {
        this.deps.logger.warn('workers did not close within the shutdown deadline; continuing the shutdown');
      }
    } finally {
      clearTimeout(abortRuns);
      clearTimeout(giveUp);
    }
  }
}
