// Basic auth for the dashboard, the API and /metrics: an admin login, an optional read-only viewer login, constant-time
// comparison, and failed logins rate-limited per client address so a password cannot be guessed at line speed.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Logger } from '../log.ts';

export type Role = 'admin' | 'viewer';

export interface Credentials {
  user: string;
  password: string;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      role?: Role;
      user?: string;
      requestId?: string;
    }
  }
}

/** Admin credentials from the config, or generated ones (printed once by the caller): the dashboard is never open. */
export function adminCredentials(user: string | undefined, password: string | undefined): Credentials & { generated: boolean } {
  if (user && password) return { user, password, generated: false };
  return { user: 'admin', password: randomBytes(18).toString('base64url'), generated: true };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Constant-time comparison of equal-length digests, so neither length nor content leaks through timing. */
function same(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

/** Parses `Authorization: Basic ...`; null when absent or malformed. */
export function basicCredentials(header: string | undefined): Credentials | null {
  const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header ?? '');
  if (!m) return null;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export function roleOf(header: string | undefined, admin: Credentials, viewer?: Credentials): Role | null {
  const given = basicCredentials(header);
  if (!given) return null;
  // Both comparisons always run: which login matched must not show in the timing either.
  const isAdmin = same(given.user, admin.user) && same(given.password, admin.password);
  const isViewer = viewer !== undefined && same(given.user, viewer.user) && same(given.password, viewer.password);
  return isAdmin ? 'admin' : isViewer ? 'viewer' : null;
}

/** Fixed-window counter of failed logins per client address. */
export class LoginLimiter {
  private readonly failures = new Map<string, { count: number; resetAt: number }>();
  readonly max: number;
  readonly windowMs: number;

  constructor(max = 10, windowMs = 60_000) {
    this.max = max;
    this.windowMs = windowMs;
  }

  /** Seconds until this address may try again, or 0 when it is not blocked. */
  retryAfter(key: string, now = Date.now()): number {
    const entry = this.failures.get(key);
    if (!entry || entry.resetAt <= now) return 0;
    return entry.count >= this.max ? Math.ceil((entry.resetAt - now) / 1000) : 0;
  }

  fail(key: string, now = Date.now()): void {
    if (this.failures.size > 10_000) this.prune(now);
    const entry = this.failures.get(key);
    if (!entry || entry.resetAt <= now) this.failures.set(key, { count: 1, resetAt: now + this.windowMs });
    else entry.count++;
  }

  private prune(now: number): void {
    for (const [key, entry] of this.failures) if (entry.resetAt <= now) this.failures.delete(key);
  }
}

export interface AuthOptions {
  admin: Credentials;
  viewer?: Credentials;
  limiter: LoginLimiter;
  logger: Logger;
}

/**
 * Requires a valid login; sets `req.role` and `req.user`. A request without credentials is simply asked for them (the
 * browser's first request always is one); wrong credentials count towards the per-address limit, and a blocked address
 * gets 429 with Retry-After even with the right password, so guessing cannot continue once the limit is hit.
 */
export function authenticate(opts: AuthOptions): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const client = req.socket.remoteAddress ?? 'unknown';
    const wait = opts.limiter.retryAfter(client);
    if (wait > 0) {
      res
        .status(429)
        .set('Retry-After', String(wait))
        .json({ error: 'too_many_attempts', message: `too many failed logins from this address; retry in ${wait} s` });
      return;
    }
    const role = roleOf(req.headers.authorization, opts.admin, opts.viewer);
    if (!role) {
      if (req.headers.authorization) {
        opts.limiter.fail(client);
        opts.logger.warn({ reqId: req.requestId, client, path: req.path }, 'failed login');
      }
      res
        .status(401)
        .set('WWW-Authenticate', 'Basic realm="jobscope", charset="UTF-8"')
        .json({ error: 'unauthorized', message: 'log in with the dashboard credentials' });
      return;
    }
    req.role = role;
    req.user = role === 'admin' ? opts.admin.user : opts.viewer!.user;
    next();
  };
}

/** After `authenticate`: refuses read-only users. */
export const adminOnly: RequestHandler = (req, res, next) => {
  if (req.role !== 'admin') {
    res.status(403).json({ error: 'forbidden', message: 'read-only user: this action needs the admin login' });
    return;
  }
  next();
};
