// Express (or any framework with the same req/res/next shape): the token from the headers, the verifier's verdict, then
// either `req.jobToken` and next(), or the RFC 6750 refusal. Typed structurally, so this package does not depend on Express.
import type { JobTokenClaims } from './claims.ts';
import { extractToken, type RequestLike } from './extract.ts';
import { rejection } from './rejection.ts';
import type { JobTokenVerifier, ScopeOptions } from './verifier.ts';

interface ExpressLikeRequest extends RequestLike {
  originalUrl?: string;
  jobToken?: JobTokenClaims;
}
interface ExpressLikeResponse {
  status(code: number): ExpressLikeResponse;
  set(headers: Record<string, string>): ExpressLikeResponse;
  json(body: unknown): unknown;
}

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
  const refuse = (res: ExpressLikeResponse, err: unknown) => {
    const r = rejection(err);
    res.status(r.status).set(r.headers).json(r.body);
  };
  const middleware = (req: ExpressLikeRequest, res: ExpressLikeResponse, next: (err?: unknown) => void): void => {
    let token: string;
    try {
      token = extractToken({ headers: req.headers, rawHeaders: req.rawHeaders, url: req.originalUrl ?? req.url });
    } catch (err) {
      return refuse(res, err);
    }
    verifier.verify(token, opts).then(
      (claims) => {
        req.jobToken = claims;
        next();
      },
      (err: unknown) => refuse(res, err),
    );
  };
  return Object.assign(middleware, { verifier });
}
