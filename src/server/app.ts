// The HTTP server: JSON API, JWKS, health. Reads the same registry and queues as the runtime, never its internals.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { JobscopeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Runtime } from '../runtime/runtime.ts';

export type Role = 'admin' | 'viewer';

export interface Credentials {
  user: string;
  password: string;
}

export interface ServerOptions {
  runtime: Runtime;
  logger: Logger;
  admin: Credentials;
  viewer?: Credentials;
  /** Largest accepted JSON body (default 100 kb). */
  bodyLimit?: string;
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

export function roleOf(header: string | undefined, admin: Credentials, viewer?: Credentials): Role | null {
  const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header ?? '');
  if (!m) return null;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  const user = decoded.slice(0, colon);
  const pass = decoded.slice(colon + 1);
  const isAdmin = same(user, admin.user) && same(pass, admin.password);
  const isViewer = viewer !== undefined && same(user, viewer.user) && same(pass, viewer.password);
  return isAdmin ? 'admin' : isViewer ? 'viewer' : null;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      role?: Role;
    }
  }
}

const STATUS_OF: Record<string, number> = {
  ERR_PARAMS: 400,
  ERR_UNKNOWN_JOB: 404,
  ERR_UNKNOWN_RUN: 404,
  ERR_OVERLAP_SKIPPED: 409,
  ERR_RUN_FINISHED: 409,
};

export function createApp(opts: ServerOptions): express.Express {
  const { runtime, logger } = opts;
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);

  app.get('/.well-known/jwks.json', (_req, res) => {
    res.set('Cache-Control', 'public, max-age=60').json(runtime.keys.jwks());
  });
  app.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  app.get('/readyz', async (_req, res) => {
    try {
      await Promise.race([runtime.redis.ping(), new Promise((_, rej) => setTimeout(() => rej(new Error('timeout')), 1000))]);
      res.json({ ok: true, redis: 'up', jobs: runtime.registry.names.length });
    } catch {
      res.status(503).json({ ok: false, redis: 'down', jobs: runtime.registry.names.length });
    }
  });

  const auth = (req: Request, res: Response, next: NextFunction) => {
    const role = roleOf(req.headers.authorization, opts.admin, opts.viewer);
    if (!role) {
      res
        .status(401)
        .set('WWW-Authenticate', 'Basic realm="jobscope", charset="UTF-8"')
        .json({ error: 'unauthorized', message: 'log in with the dashboard credentials' });
      return;
    }
    req.role = role;
    next();
  };
  const adminOnly = (req: Request, res: Response, next: NextFunction) => {
    if (req.role !== 'admin') {
      res.status(403).json({ error: 'forbidden', message: 'read-only user: this action needs the admin login' });
      return;
    }
    next();
  };

  const api = express.Router();
  api.use(auth);
  api.use(express.json({ limit: opts.bodyLimit ?? '100kb' }));
  api.get('/jobs', async (_req, res) => {
    res.json(await runtime.queues.summaries());
  });
  api.post('/jobs/:name/runs', adminOnly, async (req, res) => {
    const body: unknown = req.body ?? {};
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      res.status(400).json({ error: 'bad_request', message: 'body must be a JSON object: { "data": { ... } }' });
      return;
    }
    const { runId } = await runtime.queues.enqueue(String(req.params.name), (body as { data?: unknown }).data ?? {}, 'api');
    res.status(202).json({ runId });
  });
  api.get('/runs/:runId', async (req, res) => {
    res.json(await runtime.queues.report(String(req.params.runId)));
  });
  api.post('/runs/:runId/cancel', adminOnly, async (req, res) => {
    res.json(await runtime.cancel(String(req.params.runId), `cancelled through the API`));
  });
  api.post('/jobs/:name/pause', adminOnly, async (req, res) => {
    await runtime.pause(String(req.params.name));
    res.json({ name: req.params.name, paused: true });
  });
  api.post('/jobs/:name/resume', adminOnly, async (req, res) => {
    await runtime.resume(String(req.params.name));
    res.json({ name: req.params.name, paused: false });
  });
  api.get('/tokens', async (_req, res) => {
    res.json(await runtime.tokens.list());
  });
  api.use((_req, res) => {
    res.status(404).json({ error: 'not_found', message: 'no such API route' });
  });
  app.use('/api', api);

  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = err as { type?: string; status?: number; code?: string; message?: string; issues?: unknown };
    if (e.type === 'entity.too.large')
      return void res.status(413).json({ error: 'too_large', message: `body larger than ${opts.bodyLimit ?? '100kb'}` });
    if (e.type === 'entity.parse.failed') return void res.status(400).json({ error: 'bad_json', message: 'body is not valid JSON' });
    if (err instanceof JobscopeError && STATUS_OF[err.code]) {
      return void res
        .status(STATUS_OF[err.code])
        .json({ error: err.code, message: err.message, ...(e.issues ? { issues: e.issues } : {}) });
    }
    logger.error({ err: e.message }, 'request failed');
    res.status(500).json({ error: 'internal', message: 'internal error' });
  });
  return app;
}

export function listen(app: express.Express, port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, (err?: Error) => (err ? reject(err) : resolve(server)));
  });
}
