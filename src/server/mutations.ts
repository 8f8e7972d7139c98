// What every request that changes something (POST, PUT, PATCH, DELETE on the JSON API and on Bull Board) must pass before
// a route sees it:
// - not cross-site: a browser logged in with Basic auth sends the credentials with any request to us, including a form that
//   another site auto-submits (CSRF). Browsers say where a request comes from: `Sec-Fetch-Site` (Chromium, Firefox, Safari
//   16.4+) must be `same-origin` (or `none`: typed or bookmarked), and without it `Origin` must name this host. A request
//   with neither is not from a browser page (curl, scripts, services) and passes: it carries its credentials on purpose.
// - JSON or nothing: `Content-Type: application/json` when there is a body (415 otherwise). A cross-site form can only send
//   text/plain, urlencoded or multipart without a CORS preflight, which jobscope never grants.
// - bounded: at most the body limit (413) and nested at most MAX_DEPTH levels (400). JSON.parse itself copes with any depth,
//   but deeper data overflowed the stack further on and answered 500: first the structuredClone that Queues.enqueue makes
//   before validation (src/control/queues.ts, from about 2,000 levels) and the one in Bull Board's add/update-data checks,
//   then JSON.stringify (BullMQ storing the data, the token scrubber) from about 5,000.
// The same checks are also the algorithm of Go's net/http CrossOriginProtection.
import type { IncomingHttpHeaders } from 'node:http';
import express, { type RequestHandler } from 'express';
import type { Logger } from '../log.ts';

export const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Deepest accepted nesting of a JSON body (objects and arrays). Job data has no business being deeper. */
export const MAX_DEPTH = 64;

/** The host:port an Origin header names, or null for `null`/opaque or malformed origins. */
function originHost(origin: string): string | null {
  try {
    const url = new URL(origin);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.host : null;
  } catch {
    return null;
  }
}

/** Why this request must be refused as cross-site, or null when it may go on. */
export function crossSiteReason(method: string, headers: IncomingHttpHeaders): string | null {
  if (!MUTATING.has(method)) return null;
  const site = headers['sec-fetch-site'];
  if (Array.isArray(site)) return 'Sec-Fetch-Site is repeated';
  if (site !== undefined) {
    if (site === 'same-origin' || site === 'none') return null;
    return `the browser says this request comes from another site (Sec-Fetch-Site: ${site.slice(0, 20)}): changes are only accepted from jobscope's own pages`;
  }
  const origin = headers.origin;
  if (origin === undefined) return null;
  const host = originHost(origin);
  // Compared without the scheme: behind a TLS-terminating proxy the page is https:// while this server sees http.
  if (host !== null && host === headers.host?.toLowerCase()) return null;
  return `the request comes from another origin (Origin: ${origin.slice(0, 100)}, this server: ${headers.host ?? 'no Host header'}): changes are only accepted from jobscope's own pages`;
}

/** Refuses cross-site mutations (403) and mutations whose body is not JSON (415). Headers only: mount it before the login. */
export function mutationGuard(logger: Logger): RequestHandler {
  return (req, res, next) => {
    if (!MUTATING.has(req.method)) return next();
    const reason = crossSiteReason(req.method, req.headers);
    if (reason) {
      logger.warn({ reqId: req.requestId, method: req.method, path: req.originalUrl.split('?')[0] }, 'cross-site request refused');
      return void res.status(403).json({ error: 'cross_site', message: reason });
    }
    const type = req.headers['content-type'];
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
    // No body and no type (a bare POST /cancel) is fine; anything typed must be JSON, with or without a charset.
    if ((hasBody || type !== undefined) && type?.split(';')[0].trim().toLowerCase() !== 'application/json') {
      return void res.status(415).json({
        error: 'unsupported_media_type',
        message: `send the body as JSON with Content-Type: application/json${type ? ` (not ${type.slice(0, 60)})` : ''}`,
      });
    }
    next();
  };
}

/**
 * The nesting depth of a JSON text, counted without recursion (brackets outside strings), so it cannot overflow itself.
 * Stops counting once past `limit`.
 */
export function jsonDepth(text: Buffer | string, limit = Infinity): number {
  const s = typeof text === 'string' ? Buffer.from(text) : text;
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max && (max = depth) > limit) return max;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

class TooDeepError extends Error {
  readonly status = 400;
  readonly type = 'entity.too.deep';
}

/** express.json with the body limit and the depth limit; the error handler turns `entity.too.deep` into 400 `too_deep`. */
export function jsonBody(limit: string): RequestHandler {
  return express.json({
    limit,
    verify: (_req, _res, buf) => {
      if (jsonDepth(buf, MAX_DEPTH) > MAX_DEPTH) throw new TooDeepError(`JSON nested deeper than ${MAX_DEPTH} levels`);
    },
  });
}
