// Tracing (OpenTelemetry), off unless turned on: `enableTracing()` with OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set builds the official SDK (NodeTracerProvider, batch processor, OTLP/HTTP exporter:
// the standard OTEL_* variables apply), or `enableTracing({ tracerProvider })` uses the application's own provider.
// While it is off, `tracer` is undefined and every function here returns at its first line: the SDK is never loaded.
//
// Spans: trigger (producer) > run > attempt > each ctx.service()/ctx.http call (client, W3C traceparent sent) > the
// service's request (continued by @jobscope/verify's middleware); a consumer scope (createScopes) is a span of its own
// with its calls under it. Parents are passed explicitly (the run's scope holds its attempt's span context), so nesting
// does not depend on a context manager. Attributes name the job, run, attempt, trigger, who triggered, outcome and
// duration: never a token, a header or a data value.
//
// A run's span lives in the process that ran its first attempt, until the run's final outcome there; a retry that runs
// in another process (or after RUN_SPAN_IDLE_MS) starts a new run span in the same trace, under the trigger.
import { SpanKind, SpanStatusCode, trace, type Context, type Span, type Tracer, type TracerProvider } from '@opentelemetry/api';
import type { RunInfo, RunOutcome } from './interfaces.ts';
import { currentScope } from './token/scope.ts';

/** A parent for spans: an OpenTelemetry context holding the span to nest under. */
export type TraceParent = Context;

interface Propagator {
  inject(ctx: Context, carrier: Record<string, unknown>, setter: { set(c: Record<string, unknown>, k: string, v: string): void }): void;
  extract(ctx: Context, carrier: Record<string, unknown>, getter: Getter): Context;
}
interface Getter {
  get(c: Record<string, unknown>, k: string): string | undefined;
  keys(c: Record<string, unknown>): string[];
}

let tracer: Tracer | undefined;
let w3c: Propagator | undefined;
let root: Context | undefined;

const setter = { set: (c: Record<string, unknown>, k: string, v: string) => void (c[k] = v) };
const getter: Getter = {
  get: (c, k) => (typeof c[k] === 'string' ? (c[k] as string) : undefined),
  keys: (c) => Object.keys(c),
};

export interface TracingOptions {
  /** The application's provider; without it, the official SDK is built from the OTEL_* environment variables. */
  tracerProvider?: TracerProvider;
  /** Where OTEL_EXPORTER_OTLP_ENDPOINT is read (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** `service.name` of the SDK built here (default OTEL_SERVICE_NAME, else `jobscope`). */
  serviceName?: string;
}

export interface Tracing {
  /** Exports what is buffered. */
  forceFlush(): Promise<void>;
  /** Flushes and stops tracing here (spans are no longer made). */
  shutdown(): Promise<void>;
}

/**
 * Turns tracing on for this process: with a provider given in code, or when OTEL_EXPORTER_OTLP_ENDPOINT (or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set. Resolves to undefined (and changes nothing) otherwise.
 */
export async function enableTracing(opts: TracingOptions = {}): Promise<Tracing | undefined> {
  const env = opts.env ?? process.env;
  if (!opts.tracerProvider && !env.OTEL_EXPORTER_OTLP_ENDPOINT && !env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return undefined;
  const { W3CTraceContextPropagator } = await import('@opentelemetry/core');
  const { ROOT_CONTEXT } = await import('@opentelemetry/api');
  if (opts.tracerProvider) {
    const provider = opts.tracerProvider as TracerProvider & Partial<Tracing>;
    tracer = provider.getTracer('jobscope');
    w3c = new W3CTraceContextPropagator();
    root = ROOT_CONTEXT;
    return {
      forceFlush: async () => void (await provider.forceFlush?.()),
      shutdown: async () => {
        tracer = undefined;
        await provider.forceFlush?.();
      },
    };
  }
  const [{ NodeTracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
  ]);
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': opts.serviceName ?? env.OTEL_SERVICE_NAME ?? 'jobscope' }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  // The global provider, W3C propagator and async context: the verifier's middleware (and the application's own spans)
  // in this process use them too.
  provider.register();
  tracer = provider.getTracer('jobscope');
  w3c = new W3CTraceContextPropagator();
  root = ROOT_CONTEXT;
  return {
    forceFlush: () => provider.forceFlush(),
    shutdown: async () => {
      tracer = undefined;
      await provider.shutdown();
    },
  };
}

/** Is tracing on in this process? */
export function tracingOn(): boolean {
  return tracer !== undefined;
}

/** The W3C traceparent of the span in `ctx`. */
function traceparentOf(ctx: Context): string | undefined {
  const carrier: Record<string, unknown> = {};
  w3c!.inject(ctx, carrier, setter);
  return typeof carrier.traceparent === 'string' ? carrier.traceparent : undefined;
}

/** The W3C traceparent of a run's (or scope's) span, for a process it starts (`TRACEPARENT`); undefined when tracing is off. */
export function traceparentFor(parent: TraceParent | undefined): string | undefined {
  return tracer && parent ? traceparentOf(parent) : undefined;
}

function contextOf(traceparent: string | undefined): Context {
  return traceparent ? w3c!.extract(root!, { traceparent }, getter) : root!;
}

/** The trace id in a W3C traceparent (`00-<trace id>-<span id>-<flags>`), or null. */
export function traceIdOf(traceparent: string | undefined): string | null {
  const m = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent ?? '');
  return m ? m[1] : null;
}

function fail(span: Span, err: unknown): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.name : 'error' });
}

/**
 * The trigger's span (producer): `fn` gets its traceparent, which the run carries in its options (never in its data) so
 * that the run continues this trace. Without tracing, `fn(undefined)` and nothing else.
 */
export async function traceTrigger<T>(
  job: string,
  by: string | undefined,
  trigger: string,
  fn: (traceparent?: string) => Promise<T>,
): Promise<T> {
  if (!tracer) return fn(undefined);
  // A run started from inside a run or scope (ctx.trigger, then) continues its starter's trace.
  const parent = currentScope()?.trace ?? root!;
  const span = tracer.startSpan(
    `trigger ${job}`,
    { kind: SpanKind.PRODUCER, attributes: { 'jobscope.job': job, 'jobscope.trigger': trigger, 'jobscope.triggered_by': by ?? 'api' } },
    parent,
  );
  try {
    const result = await fn(traceparentOf(trace.setSpan(parent, span)));
    const runId = (result as { runId?: unknown } | undefined)?.runId;
    if (typeof runId === 'string') span.setAttribute('jobscope.run.id', runId);
    return result;
  } catch (err) {
    fail(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** Run spans open in this process, by run id, waiting for the run's next attempt or final outcome. */
const openRuns = new Map<string, { span: Span; started: number; timer?: NodeJS.Timeout }>();
const RUN_SPAN_IDLE_MS = 10 * 60_000;

export interface AttemptSpan {
  /** The parent of the attempt's service calls. */
  context: TraceParent;
  /** Ends the attempt's span (and the run's, when `final`) with the outcome. */
  end(outcome: RunOutcome, final: boolean): void;
  /** Ends what end() did not (an attempt handed back at shutdown or after a lost lock). */
  close(): void;
}

function runAttributes(run: RunInfo): Record<string, string | number> {
  return { 'jobscope.job': run.job, 'jobscope.run.id': run.id, 'jobscope.trigger': run.trigger, 'jobscope.triggered_by': run.triggeredBy };
}

/** The spans of one attempt (and of its run, opened at its first attempt here); undefined when tracing is off. */
export function attemptSpan(run: RunInfo, traceparent: string | undefined): AttemptSpan | undefined {
  if (!tracer) return undefined;
  let open = openRuns.get(run.id);
  if (open) clearTimeout(open.timer);
  else {
    const span = tracer.startSpan(`run ${run.job}`, { kind: SpanKind.INTERNAL, attributes: runAttributes(run) }, contextOf(traceparent));
    open = { span, started: Date.now() };
    openRuns.set(run.id, open);
  }
  const runSpan = open.span;
  const started = Date.now();
  const span = tracer.startSpan(
    `attempt ${run.job} #${run.attempt}`,
    { kind: SpanKind.INTERNAL, attributes: { ...runAttributes(run), 'jobscope.attempt': run.attempt } },
    trace.setSpan(root!, runSpan),
  );
  let ended = false;
  const endRun = (outcome: string) => {
    const entry = openRuns.get(run.id);
    if (entry?.span !== runSpan) return;
    openRuns.delete(run.id);
    clearTimeout(entry.timer);
    runSpan.setAttributes({
      'jobscope.outcome': outcome,
      'jobscope.attempts': run.attempt,
      'jobscope.duration_ms': Date.now() - entry.started,
    });
    if (outcome !== 'completed') runSpan.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
    runSpan.end();
  };
  const done = (outcome: string, final: boolean) => {
    if (ended) return;
    ended = true;
    span.setAttributes({ 'jobscope.outcome': outcome, 'jobscope.duration_ms': Date.now() - started });
    if (outcome !== 'completed') span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
    span.end();
    if (final) return endRun(outcome);
    // The next attempt comes here (usually) or elsewhere: the run's span waits for it, for a bounded time.
    const entry = openRuns.get(run.id);
    if (entry) (entry.timer = setTimeout(() => endRun('continued'), RUN_SPAN_IDLE_MS)).unref();
  };
  return { context: trace.setSpan(root!, span), end: done, close: () => done('handed-back', false) };
}

export interface ScopeSpanInfo {
  subject: string;
  scopeId: string;
  messageId?: string;
  /** The traceparent the work came with (a message header). */
  traceparent?: string;
}

/** A consumer scope's span; `fn` gets the parent for its calls (undefined when tracing is off). */
export async function scopeSpan<T>(info: ScopeSpanInfo, fn: (parent?: TraceParent) => Promise<T>): Promise<T> {
  if (!tracer) return fn(undefined);
  const started = Date.now();
  const span = tracer.startSpan(
    `scope ${info.subject}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        'jobscope.subject': info.subject,
        'jobscope.scope.id': info.scopeId,
        ...(info.messageId !== undefined ? { 'messaging.message.id': info.messageId } : {}),
      },
    },
    contextOf(info.traceparent),
  );
  let outcome = 'completed';
  try {
    return await fn(trace.setSpan(root!, span));
  } catch (err) {
    outcome = 'failed';
    fail(span, err);
    throw err;
  } finally {
    span.setAttributes({ 'jobscope.outcome': outcome, 'jobscope.duration_ms': Date.now() - started });
    span.end();
  }
}

export interface ClientSpan {
  end(status?: number, err?: unknown): void;
}

/**
 * A service call's client span, under the run's (or scope's) span; sets `traceparent` in `headers`. The URL is recorded
 * without its query string; headers are never recorded.
 */
export function clientSpan(
  parent: TraceParent | undefined,
  method: string,
  url: URL,
  service: string | undefined,
  headers: Record<string, unknown>,
): ClientSpan | undefined {
  if (!tracer || !parent) return undefined;
  const span = tracer.startSpan(
    `${method} ${service ?? url.host}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        'http.request.method': method,
        'url.full': `${url.origin}${url.pathname}`,
        'server.address': url.hostname,
        ...(service ? { 'jobscope.service': service } : {}),
      },
    },
    parent,
  );
  w3c!.inject(trace.setSpan(root!, span), headers, setter);
  return {
    end(status, err) {
      if (status !== undefined) span.setAttribute('http.response.status_code', status);
      if (err !== undefined || (status !== undefined && status >= 400)) fail(span, err);
      span.end();
    },
  };
}
