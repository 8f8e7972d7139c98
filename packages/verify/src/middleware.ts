// Express (or any framework with the same req/res/next shape): the token from the headers, the verifier's verdict, then
// either `req.jobToken` and next(), or the RFC 6750 refusal. Typed structurally, so this package does not depend on Express.
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { JobTokenClaims } from './claims.ts';
import { extractToken, type RequestLike } from './extract.ts';
import { rejection } from './rejection.ts';
import type { JobTokenVerifier, ScopeOptions } from './verifier.ts';

interface ExpressLikeRequest extends RequestLike {
  method?: string;
  path?: string;
  originalUrl?: string;
  jobToken?: JobTokenClaims;
}
interface ExpressLikeResponse {
  status(code: number): ExpressLikeResponse;
  set(headers: Record<string, string>): ExpressLikeResponse;
  json(body: unknown): unknown;
  once?(event: 'finish', listener: () => void): unknown;
}

// Tracing: the OpenTelemetry API only. A service that set up an SDK (a global tracer provider and propagator) gets a
// server span per request, continuing the caller's W3C traceparent, with the token's sub, run and jti (never the token);
// without one these are the API's no-op calls.
const tracer = trace.getTracer('@jobscope/verify');

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The verified claims of the job token, set by a jobscope verifier's middleware. */
      jobToken?: JobTokenClaims;
    }
  }
}

export type JobTokenMiddleware = ((req: ExpressLikeRequest, res: ExpressLikeResponse, next: (err?: unknown) => void) => void) & {
  /** The verifier this middleware asks. */
  verifier: JobTokenVerifier;
};

/** 401/403/503 with `{ error: <code>, message }` and WWW-Authenticate on refusal; on success `req.jobToken` holds the claims. */
export function expressMiddleware(verifier: JobTokenVerifier, opts?: ScopeOptions): JobTokenMiddleware {
  const middleware = (req: ExpressLikeRequest, res: ExpressLikeResponse, next: (err?: unknown) => void): void => {
    const parent = propagation.extract(context.active(), req.headers);
    const span = tracer.startSpan(`${req.method ?? 'HTTP'} ${req.path ?? ''}`.trim(), { kind: SpanKind.SERVER }, parent);
    const fail = (err: unknown) => {
      const r = rejection(err);
      span.setAttribute('jobscope.token.rejected', String(r.body.error));
      span.setStatus({ code: SpanStatusCode.ERROR, message: String(r.body.error) });
      span.end();
      res.status(r.status).set(r.headers).json(r.body);
    };
    let token: string;
    try {
      token = extractToken({ headers: req.headers, rawHeaders: req.rawHeaders, url: req.originalUrl ?? req.url });
    } catch (err) {
      return fail(err);
    }
    verifier.verify(token, opts).then(
      (claims) => {
        req.jobToken = claims;
        span.setAttributes({ 'jobscope.token.sub': claims.sub, 'jobscope.token.run': claims.run, 'jobscope.token.jti': claims.jti });
        if (res.once) res.once('finish', () => span.end());
        else span.end();
        context.with(trace.setSpan(parent, span), next);
      },
      (err: unknown) => fail(err),
    );
  };
  return Object.assign(middleware, { verifier });
}
