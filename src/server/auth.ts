// Basic auth for the dashboard, the API and /metrics: the environment's admin and read-only viewer, the users file
// (users.ts: admin, operator or viewer, optionally limited to job groups), constant-time comparison, and failed logins
// rate-limited per client address so a password cannot be guessed at line speed. Then what each role and group may do.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { IncomingHttpHeaders } from 'node:http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Logger } from '../log.ts';
import type { Registry } from '../jobs/registry.ts';
import type { Login, Role, UsersFile } from './users.ts';

export type { Login, Role } from './users.ts';

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
      /** The job groups this login is limited to; absent: every job. */
      groups?: readonly string[];
      requestId?: string;
    }
  }
}

/** Admin credentials from the config, or generated ones (printed once by the caller): the dashboard is never open. */
/**
 * JOBSCOPE_USER/JOBSCOPE_PASSWORD, or the generated admin login. With `stateDir`, a generated password is kept in
 * `<stateDir>/admin-password` (mode 0600) and used again at the next start (`generated` is true only when it was just
 * made, so it is printed once); without, a new one each time.
 */
export function adminCredentials(
  user: string | undefined,
  password: string | undefined,
  stateDir?: string,
): Credentials & { generated: boolean; file?: string } {
  if (user && password) return { user, password, generated: false };
  if (!stateDir) return { user: 'admin', password: randomBytes(18).toString('base64url'), generated: true };
  const file = path.join(stateDir, 'admin-password');
  const kept = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
  if (kept) return { user: 'admin', password: kept, generated: false, file };
  const fresh = randomBytes(18).toString('base64url');
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(file, fresh + '\n', { mode: 0o600 });
  return { user: 'admin', password: fresh, generated: true, file };
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

/** The environment's logins: admin (JOBSCOPE_USER) and viewer (JOBSCOPE_VIEWER_USER); null when neither matches. */
function envRole(given: Credentials, admin: Credentials | undefined, viewer: Credentials | undefined): 'admin' | 'viewer' | null {
  // Both comparisons always run: which login matched must not show in the timing either.
  const isAdmin = admin !== undefined && same(given.user, admin.user) && same(given.password, admin.password);
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
  admin?: Credentials;
  viewer?: Credentials;
  /** JOBSCOPE_USERS_FILE's users, beside the environment's two. */
  users?: UsersFile;
  limiter: LoginLimiter;
  logger: Logger;
}

/** The login of a request, by its headers object: how Bull Board's visibility guard (which sees only headers) knows who asks. */
const loginsByHeaders = new WeakMap<IncomingHttpHeaders, Login>();

export function loginOf(headers: IncomingHttpHeaders): Login | undefined {
  return loginsByHeaders.get(headers);
}

async function identify(given: Credentials, opts: AuthOptions): Promise<Login | null> {
  const role = envRole(given, opts.admin, opts.viewer);
  if (role) return { user: given.user, role };
  return opts.users ? opts.users.login(given.user, given.password) : null;
}

/**
 * Requires a valid login; sets `req.user`, `req.role` and `req.groups`. A request without credentials is simply asked for
 * them (the browser's first request always is one); wrong credentials count towards the per-address limit, and a blocked
 * address gets 429 with Retry-After even with the right password, so guessing cannot continue once the limit is hit.
 */
export function authenticate(opts: AuthOptions): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction) => {
    const client = req.socket.remoteAddress ?? 'unknown';
    const wait = opts.limiter.retryAfter(client);
    if (wait > 0) {
      res
        .status(429)
        .set('Retry-After', String(wait))
        .json({ error: 'too_many_attempts', message: `too many failed logins from this address; retry in ${wait} s` });
      return;
    }
    const given = basicCredentials(req.headers.authorization);
    const login = given ? await identify(given, opts) : null;
    if (!login) {
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
    req.user = login.user;
    req.role = login.role;
    if (login.groups) req.groups = login.groups;
    loginsByHeaders.set(req.headers, login);
    next();
  };
}

/** May this login see (and, if its role changes things, act on) this job? Limited logins see only their groups' jobs. */
export function seesJob(login: { groups?: readonly string[] }, job: { group?: string } | undefined): boolean {
  if (!login.groups) return true;
  return job?.group !== undefined && login.groups.includes(job.group);
}

/** The jobs a request's login may see, or undefined for every job (a login without groups). */
export function visibleJobs(req: Request, registry: Registry): string[] | undefined {
  if (!req.groups) return undefined;
  return registry.names.filter((name) => seesJob(req, registry.get(name)));
}

const refuse = (res: Response, message: string) => void res.status(403).json({ error: 'forbidden', message });

/** After `authenticate`: operators and admins (triggers, cancels, retries, pause and resume). */
export const operatorOnly: RequestHandler = (req, res, next) => {
  if (req.role !== 'admin' && req.role !== 'operator') return refuse(res, 'read-only user: this action needs an operator or admin login');
  next();
};

/** After `authenticate`: logins that see every job (e.g. /metrics, which names them all). */
export const allJobsOnly: RequestHandler = (req, res, next) => {
  if (req.groups) return refuse(res, `this login sees only the jobs of ${req.groups.join(', ')}; this page covers every job`);
  next();
};

/**
 * In front of the JSON API, for logins limited to job groups: a route about one job (`/jobs/:name...`, `?job=`) or one run
 * (`/runs/:runId...`, the job is the part before the first ':') answers 404 unless the job is in one of the login's groups,
 * as if it did not exist (a 403 would confirm the name). Lists are filtered by the routes themselves (`visibleJobs`).
 */
export function jobAccess(registry: Registry): RequestHandler {
  return (req, res, next) => {
    if (!req.groups) return next();
    const visible = (name: string) => registry.has(name) && seesJob(req, registry.get(name));
    const seen = () => registry.names.filter(visible).join(', ') || '(none)';
    const [, kind, raw] = req.path.split('/');
    let id: string | undefined;
    try {
      id = raw ? decodeURIComponent(raw) : undefined;
    } catch {
      return next(); // a malformed path: the router answers 400
    }
    const jobOfRun = id?.includes(':') ? id.slice(0, id.indexOf(':')) : id;
    if (kind === 'jobs' && id !== undefined && !visible(id)) {
      return void res.status(404).json({ error: 'unknown_job', message: `unknown job "${id}"; jobs you can see: ${seen()}` });
    }
    if (kind === 'runs' && id !== undefined && !visible(jobOfRun!)) {
      return void res.status(404).json({ error: 'unknown_run', message: `unknown run "${id}" (run ids look like <job>:<id>)` });
    }
    const asked = ([] as unknown[]).concat(req.query.job ?? []).flatMap((v) => String(v).split(','));
    for (const name of asked) {
      if (name && !visible(name)) {
        return void res.status(404).json({ error: 'unknown_job', message: `unknown job "${name}"; jobs you can see: ${seen()}` });
      }
    }
    next();
  };
}
