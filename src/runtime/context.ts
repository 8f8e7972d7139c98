// The handler's `ctx`: the run's data, info, signal and token, its log and progress (token-free), the service clients bound
// to the run's scope, ctx.exec, and the children it starts (ctx.trigger, ctx.triggerAndWait).
import { inspect } from 'node:util';
import { ChildRunError, RunCancelledError, RunTimeoutError, ScopeError } from '../errors.ts';
import type { ChildTriggerOptions, JobContext, RunToken } from '../interfaces.ts';
import type { Control } from '../control/control.ts';
import type { ServiceClients } from '../http/clients.ts';
import { redactTokens, redactValue } from '../redact.ts';
import type { RunScope } from '../token/scope.ts';
import type { Attempt } from './attempt.ts';
import { bindExec } from './exec.ts';

/** `ctx.token`: the scope's current tokens (re-mints included). Prints and serialises as claims only. */
export class ScopedToken implements RunToken {
  readonly #scope: RunScope;
  constructor(scope: RunScope) {
    this.#scope = scope;
  }
  get claims() {
    return this.#scope.tokens.primary.claims;
  }
  get all() {
    return this.#scope.tokens.held().map((t) => t.claims);
  }
  reveal(audience?: string): string {
    if (audience === undefined || audience === this.#scope.tokens.audiences[0]) return this.#scope.tokens.primary.raw;
    const held = this.#scope.tokens.held().find((t) => t.claims.aud.includes(audience));
    if (!held) throw new ScopeError(`no token for "${audience}" yet: it is minted on the first ctx.service('${audience}') call`);
    return held.raw;
  }
  toJSON() {
    return { claims: this.claims, all: this.all };
  }
  [inspect.custom]() {
    return `RunToken ${inspect(this.claims)}`;
  }
}

/** Rejects as soon as the signal aborts, so a handler that ignores ctx.signal cannot keep its token alive. */
export function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** What a run's context reaches beyond the run: the control plane (children) and the service clients. */
export interface ContextParts {
  control: Control;
  clients: ServiceClients;
}

/** The `ctx` of one execution of `attempt` in `scope`; `raws`: the execution's token values (grows with re-mints). */
export function runContext(attempt: Attempt, scope: RunScope, raws: string[], parts: ContextParts): JobContext {
  const { job, bullJob, record, meta } = attempt;
  const { control, clients } = parts;
  const run = scope.run;
  const trigger = childTrigger(scope, control);
  const services = new Map<string, ReturnType<ServiceClients['service']>>();
  let http: ReturnType<ServiceClients['http']> | undefined;
  return {
    data: attempt.data,
    run: scope.run,
    // Read when the handler asks: the signal is made on first use (execution.ts).
    get signal() {
      return scope.signal;
    },
    token: new ScopedToken(scope),
    log: async (line: string) => {
      await record.log(redactTokens(String(line), raws));
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
    shard: meta.shard ?? null,
    exec: bindExec({ scope, shard: meta.shard ?? null, raws, services: clients.urls, log: (line) => record.log(line) }),
    trigger,
    triggerAndWait: async <R>(name: string, childData?: unknown, opts?: ChildTriggerOptions): Promise<R> => {
      // This run holds its own slot while it waits: a child of the same serial job could never start.
      if (name === job.name && job.concurrency === 1) {
        throw new ScopeError(`ctx.triggerAndWait('${name}') inside a run of ${name} (concurrency 1) would wait forever; use ctx.trigger`);
      }
      const childId = await trigger(name, childData, opts);
      // This run's timeout or cancel reaches the child it waits for. A hand-back (shutdown, lost lock) does not: the run
      // starts again elsewhere and waits for the same child.
      const onAbort = () => {
        const reason: unknown = scope.signal.reason;
        if (!(reason instanceof RunCancelledError || reason instanceof RunTimeoutError)) return;
        void control
          .cancel(childId, `its parent ${run.id} was aborted (${reason instanceof RunTimeoutError ? 'timed out' : 'cancelled'})`)
          .catch(() => undefined);
      };
      scope.signal.addEventListener('abort', onAbort, { once: true });
      try {
        const report = await Promise.race([control.waitForRun(childId), untilAborted(scope.signal)]);
        if (report.outcome !== 'completed') throw new ChildRunError(childId, report.outcome ?? report.state, report.error);
        return report.result as R;
      } finally {
        scope.signal.removeEventListener('abort', onAbort);
      }
    },
  };
}

/**
 * ctx.trigger: starts a child run. Each child is keyed by this run, its attempt and the call's place in it: an execution
 * that starts again after a hand-back or a crash (same attempt) gets the children the first one started, and their
 * results, never second ones.
 */
function childTrigger(scope: RunScope, control: Control): JobContext['trigger'] {
  const run = scope.run;
  let calls = 0;
  return async (name: string, childData?: unknown, opts: ChildTriggerOptions = {}): Promise<string> => {
    if (!scope.open) throw new ScopeError(`run ${run.id} has ended: it cannot start runs`);
    const { delay, at, priority, key } = opts;
    const call = calls++;
    const { runId } = await control.trigger(name, childData ?? {}, {
      delay,
      at,
      priority,
      key: key ?? `child:${run.id}:${run.attempt}:${call}`,
      trigger: 'parent',
      by: `run:${run.id}`,
      parent: run.id,
    });
    return runId;
  };
}
