// The got clients a handler calls other services with. One base instance per service is extended once per process; a
// beforeRequest hook reads the run's current token for that service from the scope, so every request (retries included)
// carries the token of the run it was made in, minted for that service alone, and a request made outside any run fails
// instead of going out unauthenticated. A beforeError hook turns a refusal into an error that says what the service said
// (ServiceRefusedError, still a got HTTPError), without the token.
import got, {
  HTTPError,
  type AfterResponseHook,
  type BeforeErrorHook,
  type BeforeRequestHook,
  type Got,
  type RequestError,
  type Response,
} from 'got';
import { ScopeError, UnknownServiceError } from '../errors.ts';
import { REDACTED, maskTokens, redactTokens } from '../redact.ts';
import { currentScope } from '../token/scope.ts';
import { clientSpan, type ClientSpan, type TraceParent } from '../trace.ts';

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
      throw new ScopeError(
        'ctx.service()/ctx.http used outside a job run or scope: there is no run token to send, so the request was not made',
      );
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
    if (scope.trace) traceCall(options, scope.trace, context.jobscopeAudience);
  };
}

/** Each request's client span (trace.ts), by got's per-request options, until its response or error ends it. */
const calls = new WeakMap<object, ClientSpan>();

function traceCall(options: Parameters<BeforeRequestHook>[0], parent: TraceParent, service: string | undefined): void {
  calls.get(options)?.end(undefined, 'retried'); // a retry after a network error: the previous try's span ends here
  const url = options.url instanceof URL ? options.url : new URL(String(options.url));
  const span = clientSpan(parent, options.method, url, service, options.headers);
  if (span) calls.set(options, span);
}

const endCall: AfterResponseHook = (response) => {
  const options = response.request.options;
  calls.get(options)?.end(response.statusCode);
  calls.delete(options);
  return response;
};

/** What a service said about why it refused a call: a stable reason code, its words, the scope a route needs. */
export interface RefusalReason {
  code?: string;
  description?: string;
  scope?: string;
}

/**
 * A call made with a run's token answered with an error status, and what the service said about it: from the RFC 6750
 * `WWW-Authenticate: Bearer error=..., error_description=..., scope=...` header and a JSON body `{ error, message }` (what
 * jobscope's verifier sends; `error_description` too). Still a got HTTPError (`response`, `code`, `options`, `timings`), so
 * `instanceof HTTPError` and `err.response.statusCode` keep working; the message, `reason` and the request headers kept on
 * the error carry no token.
 *
 *   service "system" refused the run's token: insufficient_scope (token lacks scope: dict:write; the route needs scope
 *   dict:write) [403 Forbidden: POST http://system:4000/sys/dict/refresh]
 */
export class ServiceRefusedError extends HTTPError {
  name = 'ServiceRefusedError';
  /** The `ctx.service()` name, or undefined for `ctx.http`. */
  readonly service: string | undefined;
  readonly status: number;
  readonly reason: RefusalReason;

  constructor(response: Response, service: string | undefined, reason: RefusalReason, tokens: string[]) {
    super(response);
    this.service = service;
    this.status = response.statusCode;
    this.reason = reason;
    this.message = refusalMessage(response, service, reason, tokens);
    this.stack = `${this.name}: ${this.message}\n${(this.stack ?? '')
      .split('\n')
      .filter((l) => /^\s+at /.test(l))
      .join('\n')}`;
  }
}

const MAX_DESCRIPTION = 300;
const CODE = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;

/** A service's words, made safe for a run's error: no token (by value and by shape), no control characters, bounded. */
function said(value: unknown, tokens: string[], max = MAX_DESCRIPTION): string | undefined {
  if (typeof value !== 'string') return undefined;
  const text = maskTokens(redactTokens(value.slice(0, 4 * max), tokens))
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u001f\u007f]+/g, ' ')
    .trim();
  if (!text) return undefined;
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

/** The auth-params of a Bearer challenge: `Bearer realm="x", error="invalid_token", error_description="revoked"`. */
export function bearerParams(header: string | undefined): Record<string, string> {
  const params: Record<string, string> = {};
  const at = header ? header.search(/\bBearer\b/i) : -1;
  if (!header || at < 0) return params;
  const rest = header.slice(at + 6, at + 6 + 2000);
  for (const m of rest.matchAll(/([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))/g)) {
    const key = m[1].toLowerCase();
    if (!(key in params)) params[key] = (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return params;
}

function jsonOf(body: unknown): Record<string, unknown> | undefined {
  let value = body;
  if (Buffer.isBuffer(value)) value = value.length <= 65_536 ? value.toString('utf8') : undefined;
  if (typeof value === 'string') {
    try {
      value = value.length <= 65_536 ? JSON.parse(value) : undefined;
    } catch {
      return undefined;
    }
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/** What the response says about the refusal: the body's `error`/`message` first, then the Bearer challenge. */
export function refusalReason(response: Response, tokens: string[]): RefusalReason {
  const challenge = response.headers['www-authenticate'];
  const params = bearerParams(Array.isArray(challenge) ? challenge.join(', ') : challenge);
  const body = jsonOf(response.body);
  const bodyCode = said(body?.error, tokens, 64);
  const headerDescription = said(params.error_description, tokens);
  // jobscope's verifier puts its reason code in error_description; other servers put words there.
  const code = [bodyCode, headerDescription, said(params.error, tokens, 64)].find((c) => c !== undefined && CODE.test(c));
  const description =
    said(body?.message, tokens) ??
    said(body?.error_description, tokens) ??
    (headerDescription !== code ? headerDescription : undefined) ??
    (bodyCode !== code ? bodyCode : undefined);
  const scope = said(params.scope, tokens, 200);
  return { ...(code ? { code } : {}), ...(description ? { description } : {}), ...(scope ? { scope } : {}) };
}

function refusalMessage(response: Response, service: string | undefined, reason: RefusalReason, tokens: string[]): string {
  const status = `${response.statusCode}${response.statusMessage ? ` ${response.statusMessage}` : ''}`;
  let where = '(unknown URL)';
  try {
    const url = new URL(response.url || response.requestUrl.toString());
    // Without query string or credentials: the path says enough, and a query may hold what the job never meant to show.
    where = `${url.origin}${url.pathname}`;
  } catch {
    // keep the placeholder
  }
  const who = service !== undefined ? `service "${service}"` : where.replace(/^(\w+:\/\/[^/]+).*$/, '$1');
  const tokenRefused =
    (response.statusCode === 401 || response.statusCode === 403) && (reason.code !== undefined || 'www-authenticate' in response.headers);
  const unavailable = response.statusCode === 503 && (reason.code === 'unavailable' || reason.code === 'temporarily_unavailable');
  const verb = tokenRefused ? "refused the run's token" : unavailable ? "could not check the run's token" : `answered ${status}`;
  const needs = reason.scope ? `the route needs scope ${reason.scope}` : undefined;
  const words = [reason.description, needs].filter(Boolean).join('; ');
  const detail = reason.code ? `: ${reason.code}${words ? ` (${words})` : ''}` : words ? `: ${words}` : '';
  const method = response.request?.options?.method ?? '';
  const target = `${method} ${where}`.trim();
  return redactTokens(`${who} ${verb}${detail} [${tokenRefused || unavailable ? `${status}: ` : ''}${target}]`, tokens);
}

interface ErrorOptions {
  context?: RunContext;
  headers?: Record<string, string | string[] | undefined>;
}

/**
 * The hook: an HTTP error becomes a ServiceRefusedError naming the service and its reason; the run's token is taken out
 * of the request headers the error keeps (err.options.headers), so logging the whole error cannot leak it either.
 */
function explainRefusal(tokenHeader: string | undefined): BeforeErrorHook {
  const headerNames = ['authorization', ...(tokenHeader ? [tokenHeader.toLowerCase()] : [])];
  return (error: RequestError) => {
    const options = error.options as unknown as ErrorOptions | undefined;
    const tokens: string[] = [];
    const headers = options?.headers;
    for (const name of headerNames) {
      const value = headers?.[name];
      if (typeof value !== 'string') continue;
      tokens.push(value.replace(/^Bearer\s+/i, ''));
      headers![name] = name === 'authorization' ? `Bearer ${REDACTED}` : REDACTED;
    }
    if (error.options) {
      calls.get(error.options)?.end(undefined, error);
      calls.delete(error.options);
    }
    if (!(error instanceof HTTPError) || error instanceof ServiceRefusedError) return error;
    const service = options?.context?.jobscopeAudience;
    return new ServiceRefusedError(error.response as Response, service, refusalReason(error.response as Response, tokens), tokens);
  };
}

export class ServiceClients {
  private readonly bases = new Map<string, Got>();
  private readonly plain: Got;
  readonly names: string[];
  /** Service name -> base URL (what ctx.exec hands a process as JOBSCOPE_SERVICE_<NAME>_URL). */
  readonly urls: Readonly<Record<string, string>>;
  constructor(opts: ClientOptions) {
    this.urls = { ...opts.services };
    const base = got.extend({
      responseType: 'json',
      timeout: { connect: 5000, request: opts.requestTimeoutMs ?? 30_000 },
      // Retries stay idempotent-only (got's default methods); 401/403 are not retried: a fresh try would carry the same token.
      retry: { limit: 2, statusCodes: [408, 429, 500, 502, 503, 504] },
      hooks: {
        beforeRequest: [attachToken(opts.tokenHeader)],
        afterResponse: [endCall],
        beforeError: [explainRefusal(opts.tokenHeader)],
      },
    });
    this.plain = base;
    for (const [name, url] of Object.entries(opts.services)) this.bases.set(name, base.extend({ prefixUrl: url }));
    this.names = Object.keys(opts.services);
  }

  /** The client for `name`, bound to one run (its id and abort signal). */
  service(name: string, runId: string, signal: AbortSignal): Got {
    const base = this.bases.get(name);
    if (!base) throw new UnknownServiceError(name, this.names);
    return bindToRun(base, signal, { jobscopeRun: runId, jobscopeAudience: name });
  }

  http(runId: string, signal: AbortSignal): Got {
    return bindToRun(this.plain, signal, { jobscopeRun: runId });
  }
}

type GotOptions = Record<string, unknown> & { signal?: unknown; context?: Record<string, unknown> };
type Call = (url?: unknown, options?: GotOptions) => unknown;

/**
 * `base` bound to one run: what `base.extend({ signal, context })` makes, without making it. got's extend builds and
 * merges two complete option sets (14-30 us and 3.7 KB kept, measured, in every run that calls a service); here each call
 * passes the run's signal and context as its own options, which got merges into the request's options anyway. The call's
 * own `signal` wins (as over an extended instance's); the run's context keys win over the call's (a request cannot pose as
 * another run's). Every entry point of a got instance is bound: the call, its method shortcuts, `stream` (and its
 * shortcuts), `paginate` (`each`, `all`); `extend` and `defaults`, rarely used, go through a real extended instance, made
 * once when first used.
 */
export function bindToRun(base: Got, signal: AbortSignal, context: RunContext): Got {
  // An options object given as the input keeps its own signal; got merges its context, then the call's, into the request's.
  const via =
    (fn: Call): Call =>
    (url, options) => {
      const input = url !== null && typeof url === 'object' && !(url instanceof URL) ? (url as GotOptions) : undefined;
      return fn(url, { ...options, signal: options?.signal ?? input?.signal ?? signal, context: { ...options?.context, ...context } });
    };
  const api = base as unknown as Call & Record<string, Call> & { stream: Call & Record<string, Call> };
  const bound = via(api) as Call & Record<string, unknown>;
  const stream = via(api.stream) as Call & Record<string, unknown>;
  for (const method of ['get', 'post', 'put', 'patch', 'head', 'delete']) {
    bound[method] = via(api[method]);
    stream[method] = via(api.stream[method]);
  }
  const each = via(base.paginate.each as unknown as Call);
  bound.paginate = Object.assign(each, { each, all: via(base.paginate.all as unknown as Call) });
  bound.stream = stream;
  let extended: Got | undefined;
  const full = () => (extended ??= base.extend({ signal, context: { ...context } }));
  bound.extend = (...more: Parameters<Got['extend']>) => full().extend(...more);
  Object.defineProperty(bound, 'defaults', { get: () => full().defaults, enumerable: true });
  return bound as unknown as Got;
}
