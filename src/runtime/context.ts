// The handler's `ctx`: the run's data, info, signal and token, its log and progress (token-free), the service clients bound
// to the run's scope, ctx.exec, and the children it starts (ctx.trigger, ctx.triggerAndWait).
import { inspect } from 'node:util';
import { ChildRunError, RunCancelledError, RunTimeoutError, ScopeError } from '../errors.ts';
import type { Got } from 'got';
import type { ChildTriggerOptions, JobContext, RunInfo, RunToken } from '../interfaces.ts';
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

/**
 * The `ctx` of one execution of `attempt` in `scope`; `raws`: the execution's token values (grows with re-mints). Its
 * functions are made when the handler first reads them (most handlers use few of them), each made once and bound, so a
 * handler may take them apart: `async run({ data, log, service })`.
 */
export class RunContext implements JobContext {
  readonly data: Record<string, unknown>;
  readonly run: RunInfo;
  readonly shard: JobContext['shard'];
  readonly #attempt: Attempt;
  readonly #scope: RunScope;
  readonly #raws: string[];
  readonly #parts: ContextParts;
  #token: ScopedToken | undefined;
  #log: JobContext['log'] | undefined;
  #progress: JobContext['progress'] | undefined;
  #service: JobContext['service'] | undefined;
  #http: Got | undefined;
  #exec: JobContext['exec'] | undefined;
  #trigger: JobContext['trigger'] | undefined;
  #triggerAndWait: JobContext['triggerAndWait'] | undefined;

  constructor(attempt: Attempt, scope: RunScope, raws: string[], parts: ContextParts) {
    this.data = attempt.data;
    this.run = scope.run;
    this.shard = attempt.meta.shard ?? null;
    this.#attempt = attempt;
    this.#scope = scope;
    this.#raws = raws;
    this.#parts = parts;
  }

  /** Made on first read (execution.ts). */
  get signal(): AbortSignal {
    return this.#scope.signal;
  }

  get token(): RunToken {
    return (this.#token ??= new ScopedToken(this.#scope));
  }

  get log(): JobContext['log'] {
    const { record } = this.#attempt;
    const raws = this.#raws;
    return (this.#log ??= async (line: string) => {
      await record.log(redactTokens(String(line), raws));
    });
  }

  get progress(): JobContext['progress'] {
    const { bullJob } = this.#attempt;
    const raws = this.#raws;
    return (this.#progress ??= async (value: number | object) => {
      await bullJob.updateProgress(redactValue(value, raws));
    });
  }

  get service(): JobContext['service'] {
    if (this.#service) return this.#service;
    const { clients } = this.#parts;
    const scope = this.#scope;
    const services = new Map<string, Got>();
    return (this.#service = (name: string) => {
      let client = services.get(name);
      if (!client) services.set(name, (client = clients.service(name, scope.run.id, scope.signal)));
      return client;
    });
  }

  get http(): Got {
    return (this.#http ??= this.#parts.clients.http(this.#scope.run.id, this.#scope.signal));
  }

  get exec(): JobContext['exec'] {
    const { record } = this.#attempt;
    return (this.#exec ??= bindExec({
      scope: this.#scope,
      shard: this.shard,
      raws: this.#raws,
      services: this.#parts.clients.urls,
      log: (line) => record.log(line),
    }));
  }

  get trigger(): JobContext['trigger'] {
    return (this.#trigger ??= childTrigger(this.#scope, this.#parts.control));
  }

  get triggerAndWait(): JobContext['triggerAndWait'] {
    if (this.#triggerAndWait) return this.#triggerAndWait;
    const { job } = this.#attempt;
    const { control } = this.#parts;
    const scope = this.#scope;
    const trigger = this.trigger;
    const run = scope.run;
    return (this.#triggerAndWait = async <R>(name: string, childData?: unknown, opts?: ChildTriggerOptions): Promise<R> => {
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
    });
  }
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
