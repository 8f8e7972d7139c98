// The got clients a handler calls other services with. One base instance per service is extended once per process; a
// beforeRequest hook reads the run's current token for that service from the scope, so every request (retries included)
// carries the token of the run it was made in, minted for that service alone, and a request made outside any run fails
// instead of going out unauthenticated.
import got, { type BeforeRequestHook, type Got } from 'got';
import { ScopeError, UnknownServiceError } from '../errors.ts';
import { currentScope } from '../token/scope.ts';

export interface ClientOptions {
  services: Record<string, string>;
  /** Extra header (e.g. X-Access-Token) carrying the token besides Authorization. */
  tokenHeader?: string;
  /** Per-request timeout in ms (default 30 s). */
  requestTimeoutMs?: number;
}

interface RunContext {
  jobscopeRun?: string;
  /** The service a `ctx.service(name)` client calls: its token names that service alone. */
  jobscopeAudience?: string;
  /** For `ctx.http`: which of the job's audiences a request is for (default: the first). */
  audience?: string;
}

function attachToken(tokenHeader: string | undefined): BeforeRequestHook {
  return async (options) => {
    const scope = currentScope();
    const context = options.context as RunContext;
    const bound = context.jobscopeRun;
    if (!scope) {
      throw new ScopeError('ctx.service()/ctx.http used outside a job run: there is no run token to send, so the request was not made');
    }
    const ended = () => new ScopeError(`run ${scope.run.id} has ended: its token is revoked, so the request was not made`);
    if (!scope.open) throw ended();
    if (bound !== undefined && bound !== scope.run.id) {
      throw new ScopeError(`a client of run ${bound} was used inside run ${scope.run.id}: use this run's ctx.service()`);
    }
    const token = await scope.tokens.token(context.jobscopeAudience ?? context.audience ?? scope.tokens.audiences[0]);
    // The first call to a service mints its token: the run may have ended meanwhile.
    if (!scope.open) throw ended();
    options.headers.authorization = `Bearer ${token.raw}`;
    if (tokenHeader) options.headers[tokenHeader.toLowerCase()] = token.raw;
  };
}

export class ServiceClients {
  private readonly bases = new Map<string, Got>();
  private readonly plain: Got;
  readonly names: string[];
  constructor(opts: ClientOptions) {
    const base = got.extend({
      responseType: 'json',
      timeout: { connect: 5000, request: opts.requestTimeoutMs ?? 30_000 },
      // Retries stay idempotent-only (got's default methods); 401/403 are not retried: a fresh try would carry the same token.
      retry: { limit: 2, statusCodes: [408, 429, 500, 502, 503, 504] },
      hooks: { beforeRequest: [attachToken(opts.tokenHeader)] },
    });
    this.plain = base;
    for (const [name, url] of Object.entries(opts.services)) this.bases.set(name, base.extend({ prefixUrl: url }));
    this.names = Object.keys(opts.services);
  }

  /** The client for `name`, bound to one run (its id and abort signal). */
  service(name: string, runId: string, signal: AbortSignal): Got {
    const base = this.bases.get(name);
    if (!base) throw new UnknownServiceError(name, this.names);
    return base.extend({ signal, context: { jobscopeRun: runId, jobscopeAudience: name } });
  }

  http(runId: string, signal: AbortSignal): Got {
    return this.plain.extend({ signal, context: { jobscopeRun: runId } });
  }
}
