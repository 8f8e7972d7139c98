// The HTTP server: JWKS and health (open), then everything else behind Basic auth: the JSON API, /metrics, jobscope's
// pages at /dashboard and Bull Board at /dashboard/queues. It asks the control plane (control/control.ts) everything;
// only Bull Board is handed the queues themselves. Every change (API or Bull Board) passes the mutation guard first
// (mutations.ts: same-origin, JSON, bounded) and leaves one `audit` log line naming the user.
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import helmet from 'helmet';
import { HTTP_ERRORS, JobscopeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { redisReadiness } from '../redis/readiness.ts';
import type { Alerts } from '../control/alerts.ts';
import type { Control } from '../control/control.ts';
import type { RunExecutor } from '../runtime/executor.ts';
import { apiRouter, idLimits } from './api.ts';
import { LoginLimiter, allJobsOnly, authenticate, jobAccess, type Credentials } from './auth.ts';
import { BOARD_PATH, createBoards } from './bullboard.ts';
import { dashboardPages } from './dashboard.ts';
import { introspection, type IntrospectConfig } from './introspect.ts';
import { Metrics } from './metrics.ts';
import { MUTATING, jsonBody, mutationGuard } from './mutations.ts';
import { UsersFile } from './users.ts';

export { adminCredentials, type Credentials, type Role } from './auth.ts';

export interface ServerOptions {
  control: Control;
  /** The public signing keys served at /.well-known/jwks.json (configured keys and retired keys still needed). */
  jwks: () => Promise<{ keys: object[] }>;
  /** This process's run executor, if it is a worker: /metrics counts its runs and tokens. */
  executor?: RunExecutor;
  /** This process's alert delivery, if it runs any: /metrics counts its deliveries. */
  alerts?: Alerts;
  logger: Logger;
  /** POST /oauth/introspect (RFC 7662) for the clients of JOBSCOPE_INTROSPECT_CLIENTS; absent: no such route. */
  introspect?: IntrospectConfig;
  /** JOBSCOPE_USER/JOBSCOPE_PASSWORD (or generated ones). At least one of admin, viewer and usersFile is required. */
  admin?: Credentials;
  viewer?: Credentials;
  /** JOBSCOPE_USERS_FILE: more logins with roles and job groups (users.ts), re-read when it changes. */
  usersFile?: string;
  /** Largest accepted JSON body (default 100kb); larger ones get 413. */
  bodyLimit?: string;
  /** Failed logins allowed per client address and window before 429 (default 10 per minute). */
  loginLimit?: { max: number; windowMs: number };
  /** Where jobscope's pages are (default: the package's dashboard/ folder). */
  dashboardDir?: string;
  /** JOBSCOPE_TRACE_URL (`{traceId}`): the run view gains `traceUrl`, which the Run page links to. */
  traceUrl?: string;
}

/** A request id (a caller's X-Request-Id if it looks like one) and one log line per request: method, path, status, time. */
function requestLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const given = req.headers['x-request-id'];
    req.requestId = typeof given === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(given) ? given : randomUUID();
    res.setHeader('X-Request-Id', req.requestId);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      // The path only: no query string, no headers, so neither credentials nor tokens can reach the log.
      const entry = {
        reqId: req.requestId,
        method: req.method,
        path: req.originalUrl.split('?')[0],
        status: res.statusCode,
        ms: Number((process.hrtime.bigint() - started) / 1000n) / 1000,
        user: req.user,
      };
      // Reads that succeed (the pages poll) and the browser's first, credential-less request are debug; the rest is info.
      if ((req.method === 'GET' || req.method === 'HEAD') && (res.statusCode < 400 || res.statusCode === 401))
        logger.debug(entry, 'request');
      else logger.info(entry, 'request');
    });
    next();
  };
}

/** Bull Board's routes about a whole queue (`/api/queues/:queue/<action>`); others are about one run of it. */
const QUEUE_ACTIONS = [
  'add',
  'retry',
  'promote',
  'clean',
  'pause',
  'resume',
  'concurrency',
  'rate-limit',
  'empty',
  'obliterate',
  'job-schedulers',
];

/** What a mutating request did, for the audit line: the action and the job or run it was about. */
export function describeAction(where: 'api' | 'board', method: string, path: string): { action: string; job?: string; run?: string } {
  const parts = path.split('/').filter(Boolean).map(safeDecode);
  if (where === 'api') {
    // /jobs/:name/runs -> trigger, /jobs/:name/pause, /runs/:runId/cancel, /runs/:runId/retry, ...
    const [kind, id, verb] = parts;
    if (kind === 'jobs' && id) return { action: verb === 'runs' ? 'trigger' : (verb ?? method.toLowerCase()), job: id };
    if (kind === 'runs' && id) return { action: verb ?? method.toLowerCase(), job: id.split(':')[0], run: id };
    return { action: `${method.toLowerCase()} ${parts.join('/')}` };
  }
  // Bull Board: /api/queues/:queue/<action>, /api/queues/:queue/:jobId/<action>, /api/queues/pause (every queue).
  const [, , queue, ...rest] = parts;
  if (parts[0] !== 'api' || parts[1] !== 'queues' || !queue) return { action: `board ${method.toLowerCase()} ${parts.join('/')}` };
  if (rest.length === 0) return { action: `board ${queue} all` };
  if (QUEUE_ACTIONS.includes(rest[0])) return { action: `board ${rest.join(' ')}`, job: queue };
  return { action: `board ${rest.slice(1).join(' ') || method.toLowerCase()}`, job: queue, run: `${queue}:${rest[0]}` };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * One `audit` log line per change a logged-in user asked for, whatever the answer: user, role, action, job, run (a new
 * run's id is read from the answer), status. After `authenticate`, so the user is known; the request line stays as well.
 */
function audit(logger: Logger, where: 'api' | 'board'): RequestHandler {
  return (req, res, next) => {
    if (!MUTATING.has(req.method)) return next();
    const what = describeAction(where, req.method, req.path);
    let answer: unknown;
    const json = res.json.bind(res);
    res.json = (body: unknown) => {
      answer = body;
      return json(body);
    };
    res.on('finish', () => {
      const a = answer as { runId?: unknown; job?: { id?: unknown } } | undefined;
      const created =
        typeof a?.runId === 'string' ? a.runId : what.job && a?.job?.id !== undefined ? `${what.job}:${String(a.job.id)}` : undefined;
      const run = what.run ?? created;
      logger.info(
        {
          audit: true,
          reqId: req.requestId,
          user: req.user,
          role: req.role,
          action: what.action,
          job: what.job,
          run,
          status: res.statusCode,
        },
        'audit',
      );
    });
    next();
  };
}

function security(): RequestHandler {
  return helmet({
    contentSecurityPolicy: {
      directives: {
        'script-src': ["'self'"],
        // Bull Board's UI uses inline styles; its web-font link is removed (bullboard.ts): system fonts, nothing third-party.
        'style-src': ["'self'", "'unsafe-inline'"],
        'font-src': ["'self'", 'data:'],
        'img-src': ["'self'", 'data:'],
        'worker-src': ["'self'", 'blob:'],
        // jobscope is often served over plain HTTP on an internal address: upgrading would break it.
        'upgrade-insecure-requests': null,
      },
    },
  });
}

/**
 * Logout of a Basic-auth login: a browser forgets the credentials it keeps for this site when a request with others is
 * refused, so the pages ask this route with made-up credentials. Always 401; outside the login (no limiter, no scrypt).
 */
const logout: RequestHandler = (_req, res) => {
  res
    .status(401)
    .set('WWW-Authenticate', 'Basic realm="jobscope", charset="UTF-8"')
    .json({ error: 'unauthorized', message: 'logged out: log in again at /dashboard/' });
};

/** The one error envelope (`{ error, message }`, README's table) for everything a route throws or a parser refuses. */
function errorHandler(logger: Logger, bodyLimit: string) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const e = err as { type?: string; status?: number; message?: string; issues?: unknown; blocking?: unknown };
    if (e.type === 'entity.too.large') return void res.status(413).json({ error: 'too_large', message: `body larger than ${bodyLimit}` });
    if (e.type === 'entity.parse.failed') {
      // express.json takes objects and arrays only: valid JSON of another kind (null, "x", 1) is called what it is.
      const message = isJson((e as { body?: unknown }).body) ? 'body must be a JSON object' : 'body is not valid JSON';
      return void res.status(400).json({ error: 'bad_json', message });
    }
    if (e.type === 'entity.too.deep') return void res.status(400).json({ error: 'too_deep', message: e.message });
    if (e.status === 415) return void res.status(415).json({ error: 'unsupported_media_type', message: e.message ?? 'unsupported body' });
    if (err instanceof JobscopeError && HTTP_ERRORS[err.code]) {
      const { status, error } = HTTP_ERRORS[err.code];
      const param = (err as { param?: string }).param;
      return void res.status(status).json({
        error,
        message: err.message,
        ...(param ? { param } : {}),
        ...(e.issues ? { issues: e.issues } : {}),
        ...(e.blocking ? { blocking: e.blocking } : {}),
      });
    }
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      return void res.status(e.status).json({ error: 'bad_request', message: e.message ?? 'bad request' });
    }
    logger.error({ reqId: req.requestId, err: e.message }, 'request failed');
    res.status(500).json({ error: 'internal', message: 'internal error', requestId: req.requestId });
  };
}

/** GET /readyz: not ready while this process's Redis log says lost (one connection answering is not enough) or a PING fails. */
function readiness(control: Control): RequestHandler {
  return async (_req, res) => {
    const jobs = control.registry.names.length;
    const { reason } = await redisReadiness(control);
    if (reason) res.status(503).json({ ok: false, redis: 'down', jobs, reason });
    else res.json({ ok: true, redis: 'up', jobs });
  };
}

/** The routes open without the dashboard login: JWKS, health, logout, and introspection (its clients have their own). */
function openRoutes(app: express.Express, opts: ServerOptions): void {
  app.get('/.well-known/jwks.json', async (_req, res) => {
    // Configured keys plus keys retired by a rotation whose tokens may still be live (src/token/jwks.ts).
    res.set('Cache-Control', 'public, max-age=60').json(await opts.jwks());
  });
  app.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  app.get('/readyz', readiness(opts.control));
  app.get('/logout', logout);
  // Services authenticate as introspection clients (their own Basic credentials), not with the dashboard login.
  if (opts.introspect) app.use('/oauth/introspect', introspection(opts.introspect, opts));
}

/** The dashboard login: the environment's admin and viewer, and the users file. */
function login(opts: ServerOptions): RequestHandler {
  if (!opts.admin && !opts.viewer && !opts.usersFile) throw new Error('createApp: no login configured (admin, viewer or usersFile)');
  // Names from the environment cannot also be in the file: one name, one password, one role.
  const reserved = [opts.admin?.user, opts.viewer?.user].filter((u): u is string => u !== undefined);
  return authenticate({
    admin: opts.admin,
    viewer: opts.viewer,
    users: opts.usersFile ? new UsersFile(opts.usersFile, { reserved, logger: opts.logger }) : undefined,
    limiter: new LoginLimiter(opts.loginLimit?.max ?? 10, opts.loginLimit?.windowMs ?? 60_000),
    logger: opts.logger,
  });
}

/** GET /metrics: this process's counters and the queues'. Metrics name every job: not for logins limited to some groups. */
function metricsRoute(opts: ServerOptions): RequestHandler {
  const metrics = new Metrics(opts.control);
  if (opts.executor) metrics.observe(opts.executor);
  if (opts.alerts) metrics.observeAlerts(opts.alerts);
  return async (_req, res) => {
    res.set('Content-Type', metrics.registry.contentType).send(await metrics.text());
  };
}

/** jobscope's pages at /dashboard (after the login), '/' pointing to them. */
function pages(app: express.Express, auth: RequestHandler, dashboardDir?: string): void {
  app.get('/', (_req, res) => res.redirect('/dashboard/'));
  app.use('/dashboard', auth, (req, res, next) => {
    // '/dashboard' -> '/dashboard/' so the pages' relative links resolve inside it.
    if (req.originalUrl === '/dashboard') return res.redirect(301, '/dashboard/');
    next();
  });
  app.use('/dashboard', dashboardPages(dashboardDir));
}

export function createApp(opts: ServerOptions): express.Express {
  const { control, logger } = opts;
  const bodyLimit = opts.bodyLimit ?? '100kb';
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(requestLog(logger));
  app.use(security());
  openRoutes(app, opts);

  const auth = login(opts);
  const guard = mutationGuard(logger);
  const body = jsonBody(bodyLimit);
  app.get('/metrics', auth, allJobsOnly, metricsRoute(opts));

  // The guard reads headers only, so it runs before the login (no scrypt, no limiter for refused requests); the body is
  // parsed after it (nothing is read for an unknown client), once, with the depth limit: the routes' own parsers skip it.
  const api = apiRouter(control, bodyLimit, opts.traceUrl);
  app.use('/api', guard, auth, audit(logger, 'api'), body, idLimits, jobAccess(control.registry), api);
  app.use(BOARD_PATH, guard, auth, audit(logger, 'board'), body, createBoards(control.queues, bodyLimit).router);
  pages(app, auth, opts.dashboardDir);

  app.use((_req, res) => {
    res.status(404).json({ error: 'not_found', message: 'no such route' });
  });
  app.use(errorHandler(logger, bodyLimit));
  return app;
}

function isJson(text: unknown): boolean {
  try {
    JSON.parse(String(text));
    return typeof text === 'string';
  } catch {
    return false;
  }
}

/**
 * Node answers a request line and headers over its limit (16 KB) with a bare 431 before Express sees it: answer it with
 * the JSON envelope of every other error instead (a 20 KB run id in a URL is the usual cause).
 */
const HEADERS_TOO_LARGE = JSON.stringify({
  error: 'headers_too_large',
  message: 'the request line and headers are larger than 16 KB: ids are at most 200 characters',
});

export function listen(app: express.Express, port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, (err?: Error) => (err ? reject(err) : resolve(server)));
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable) return void socket.destroy();
      if (err.code === 'HPE_HEADER_OVERFLOW') {
        socket.end(
          `HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json; charset=utf-8\r\n` +
            `Content-Length: ${Buffer.byteLength(HEADERS_TOO_LARGE)}\r\nConnection: close\r\n\r\n${HEADERS_TOO_LARGE}`,
        );
      } else socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    });
  });
}
