// The JSON API under /api (DESIGN.md's table plus what the dashboard pages need). Every route requires a login; every
// change requires an operator or admin login. Nothing here ever returns a raw token: runs carry claims, /tokens carries metadata.
import express, { type Request, type RequestHandler, type Response, type Router } from 'express';
import type { Control } from '../control/control.ts';
import type { TriggerRequest } from '../interfaces.ts';
import { MAX_LIMIT, RunQueryError, type RunQuery } from '../control/runs.ts';
import { operatorOnly, visibleJobs } from './auth.ts';

/** What POST /api/jobs/:name/runs accepts. */
const TRIGGER_FIELDS = ['data', 'trigger', 'delay', 'at', 'priority', 'key'];

/** A list parameter: `a,b` (or repeated); at most 50 values. */
function list(value: unknown): string[] | undefined {
  const raw = (Array.isArray(value) ? value : [value]).filter((v): v is string => typeof v === 'string');
  const out = raw
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean);
  return out.length ? out.slice(0, 50) : undefined;
}

/** The longest job name or run id a route takes (a key's run id is shorter; BullMQ ids are numbers). */
export const MAX_ID_LENGTH = 200;

/** Query parameters each list route reads: any other (`state[]`, a typo) is refused, not ignored. */
const QUERY_PARAMS: Record<string, string[]> = {
  runs: ['job', 'state', 'trigger', 'by', 'from', 'to', 'cursor', 'limit'],
  jobRuns: ['limit'],
  stats: ['tz'],
};

/** The first query parameter `route` does not read, as a problem, or null. */
function unknownParam(route: keyof typeof QUERY_PARAMS, q: Record<string, unknown>): string | null {
  const extra = Object.keys(q).find((k) => !QUERY_PARAMS[route].includes(k));
  if (extra === undefined) return null;
  const base = extra.replace(/\[.*$/, '');
  const hint = QUERY_PARAMS[route].includes(base) ? ` (give ${base}=a,b or repeat ${base}=)` : '';
  return `${extra.slice(0, 40)}: not a parameter of this route${hint}; known: ${QUERY_PARAMS[route].join(', ')}`;
}

/** `limit`: absent, or one integer from 1 to `max`; a string is the problem. */
function limitOf(value: unknown, max: number): number | undefined | string {
  if (value === undefined) return undefined;
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= max ? n : `limit: must be an integer from 1 to ${max}`;
}

/** `/jobs/:name...` and `/runs/:runId...` with an id longer than MAX_ID_LENGTH: 400 naming the parameter. */
export const idLimits: RequestHandler = (req, res, next) => {
  const [, kind, raw] = req.path.split('/');
  if ((kind === 'jobs' || kind === 'runs') && raw && raw.length > MAX_ID_LENGTH) {
    const param = kind === 'jobs' ? 'name' : 'runId';
    return void res
      .status(400)
      .json({ error: 'bad_request', param, message: `${param}: longer than ${MAX_ID_LENGTH} characters (${raw.length})` });
  }
  next();
};

/** An ISO time or epoch milliseconds. */
function instant(name: string, value: unknown): number | undefined | string {
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string') return `${name}: give one time`;
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  return Number.isFinite(ms) ? ms : `${name}: "${value}" is not an ISO time or epoch milliseconds`;
}

/** GET /api/runs's query string, checked; a string is the problem. */
function runQuery(q: Record<string, unknown>): RunQuery | string {
  const from = instant('from', q.from);
  const to = instant('to', q.to);
  if (typeof from === 'string') return from;
  if (typeof to === 'string') return to;
  const extra = unknownParam('runs', q);
  if (extra) return extra;
  const limit = limitOf(q.limit, MAX_LIMIT);
  if (typeof limit === 'string') return limit;
  if (q.by !== undefined && (typeof q.by !== 'string' || q.by.length > 300)) return 'by: give one value, e.g. user:admin';
  if (q.cursor !== undefined && typeof q.cursor !== 'string') return 'cursor: give one cursor';
  return {
    jobs: list(q.job),
    states: list(q.state),
    triggers: list(q.trigger),
    by: (q.by as string | undefined) || undefined,
    from,
    to,
    cursor: (q.cursor as string | undefined) || undefined,
    limit,
  };
}

/** The parameter a problem names (`limit: must be ...` -> limit). */
function paramOf(problem: string): string {
  return problem.slice(0, problem.indexOf(':'));
}

function objectBody(body: unknown): body is Record<string, unknown> {
  return typeof body === 'object' && body !== null && !Array.isArray(body);
}

/** 400 `bad_query` naming the parameter the problem is about. */
function badQuery(res: Response, problem: string): void {
  res.status(400).json({ error: 'bad_query', param: paramOf(problem), message: problem });
}

/** A control-plane read whose RunQueryError (a bad time zone, cursor, ...) is the caller's: 400 `bad_query`. */
async function answerQuery(res: Response, read: () => Promise<unknown>): Promise<void> {
  try {
    res.json(await read());
  } catch (err) {
    if (err instanceof RunQueryError) return badQuery(res, err.message);
    throw err;
  }
}

/** POST /api/jobs/:name/runs's body, checked: the problem (a 400's param and message) or the trigger it asks for. */
function triggerOf(body: unknown): { param?: string; message: string } | { body: Record<string, unknown>; trigger: 'api' | 'manual' } {
  if (!objectBody(body)) return { message: 'body must be a JSON object: { "data": { ... } }' };
  // The dashboard's Run-now form says 'manual' (a person clicked); other callers are 'api'.
  const trigger = body.trigger ?? 'api';
  if (trigger !== 'api' && trigger !== 'manual') {
    return { param: 'trigger', message: `trigger: must be "api" or "manual", not ${JSON.stringify(trigger)}` };
  }
  const unknown = Object.keys(body).filter((k) => !TRIGGER_FIELDS.includes(k));
  if (unknown.length) {
    const field = unknown[0].slice(0, 40);
    return { param: field, message: `${field}: not a field of a trigger; allowed: ${TRIGGER_FIELDS.join(', ')}` };
  }
  return { body, trigger };
}

/** What the handlers use: the control plane and the operator's trace URL template. */
interface Api {
  control: Control;
  traceUrl?: string;
}

type Handler = (api: Api, req: Request, res: Response) => unknown;

const me: Handler = (_api, req, res) => {
  res.json({ user: req.user, role: req.role, ...(req.groups ? { groups: req.groups } : {}) });
};

const jobs: Handler = async ({ control }, req, res) => {
  const visible = visibleJobs(req, control.registry);
  res.json((await control.jobs()).filter((j) => !visible || visible.includes(j.name)));
};

const job: Handler = async ({ control }, req, res) => {
  res.json(await control.job(String(req.params.name)));
};

const jobStats: Handler = async ({ control }, req, res) => {
  const extra = unknownParam('stats', req.query);
  if (extra) return badQuery(res, extra);
  const tz = typeof req.query.tz === 'string' && req.query.tz ? req.query.tz : 'UTC';
  await answerQuery(res, () => control.jobStats(String(req.params.name), tz));
};

const jobRuns: Handler = async ({ control }, req, res) => {
  const limit = unknownParam('jobRuns', req.query) ?? limitOf(req.query.limit, 100);
  if (typeof limit === 'string') return badQuery(res, limit);
  res.json(await control.recentRuns(String(req.params.name), limit ?? 20));
};

const trigger: Handler = async ({ control }, req, res) => {
  const checked = triggerOf(req.body ?? {});
  if (!('body' in checked)) return void res.status(400).json({ error: 'bad_request', ...checked });
  const { body, trigger } = checked;
  const { delay, at, priority, key } = body as TriggerRequest;
  const by = `user:${req.user}`;
  const { runId, existing } = await control.trigger(String(req.params.name), body.data ?? {}, { by, trigger, delay, at, priority, key });
  // A key that matched a kept run: that run, not a new one.
  if (existing) res.status(200).json({ runId, existing: true });
  else res.status(202).json({ runId });
};

const pause: Handler = async ({ control }, req, res) => {
  await control.pause(String(req.params.name));
  res.json({ name: String(req.params.name), paused: true });
};

const resume: Handler = async ({ control }, req, res) => {
  await control.resume(String(req.params.name));
  res.json({ name: String(req.params.name), paused: false });
};

// The run history across jobs: ?job=a,b&state=failed,timeout&trigger=schedule&by=user:ada&from=&to=&cursor=&limit=
const runs: Handler = async ({ control }, req, res) => {
  const query = runQuery(req.query as Record<string, unknown>);
  if (typeof query === 'string') return badQuery(res, query);
  // A login limited to some job groups sees only their runs.
  const visible = visibleJobs(req, control.registry);
  if (visible) query.jobs = query.jobs ?? visible;
  await answerQuery(res, () => control.listRuns(query));
};

const run: Handler = async ({ control, traceUrl }, req, res) => {
  const detail = await control.runDetail(String(req.params.runId));
  // traceId is 32 hex digits (trace.ts): safe to put in the operator's URL template.
  res.json(traceUrl && detail.traceId ? { ...detail, traceUrl: traceUrl.replace('{traceId}', detail.traceId) } : detail);
};

const retry: Handler = async ({ control }, req, res) => {
  const runId = String(req.params.runId);
  const { retried, state } = await control.retry(runId, `user:${req.user}`);
  if (!retried) {
    return void res.status(409).json({ error: 'not_failed', message: `run ${runId} is ${state}: only a failed run can be retried` });
  }
  res.json({ runId, state });
};

const cancel: Handler = async ({ control }, req, res) => {
  // jobscope's own pages send Sec-Fetch-Site: same-origin (the mutation guard lets nothing cross-site through).
  const where = req.headers['sec-fetch-site'] === 'same-origin' ? 'from the dashboard' : 'through the API';
  res.json(await control.cancel(String(req.params.runId), `cancelled by ${req.user} ${where}`));
};

// The dashboard's first page: runs by outcome (24 h, 7 days), runs per hour, jobs failing now, workers, live tokens.
const overview: Handler = async ({ control }, req, res) => {
  res.json(await control.overview(visibleJobs(req, control.registry) ?? control.registry.names));
};

const tokens: Handler = async ({ control }, req, res) => {
  const visible = visibleJobs(req, control.registry);
  res.json((await control.liveTokens()).filter((t) => !visible || visible.includes(t.job)));
};

// The executor registry: every worker process's heartbeat, live and recently dead (alive: false).
const workers: Handler = async ({ control }, req, res) => {
  const visible = visibleJobs(req, control.registry);
  res.json((await control.liveWorkers()).filter((w) => !visible || w.jobs.some((j) => visible.includes(j))));
};

// GET /api/workers/connections: per job, the Redis connection of each process serving it (its dispatcher's one wait).
const connections: Handler = async ({ control }, req, res) => {
  const visible = visibleJobs(req, control.registry);
  res.json((await control.workers()).filter((q) => !visible || visible.includes(q.job)));
};

/** The API: method, path, handler, and the changes' `operatorOnly` (viewers get 403). Every route needs a login (app.ts). */
const ROUTES: [method: 'get' | 'post', path: string, handler: Handler, access?: RequestHandler][] = [
  ['get', '/me', me],
  ['get', '/jobs', jobs],
  ['get', '/jobs/:name', job],
  ['get', '/jobs/:name/stats', jobStats],
  ['get', '/jobs/:name/runs', jobRuns],
  ['post', '/jobs/:name/runs', trigger, operatorOnly],
  ['post', '/jobs/:name/pause', pause, operatorOnly],
  ['post', '/jobs/:name/resume', resume, operatorOnly],
  ['get', '/runs', runs],
  ['get', '/runs/:runId', run],
  ['post', '/runs/:runId/retry', retry, operatorOnly],
  ['post', '/runs/:runId/cancel', cancel, operatorOnly],
  ['get', '/overview', overview],
  ['get', '/tokens', tokens],
  ['get', '/workers', workers],
  ['get', '/workers/connections', connections],
];

export function apiRouter(control: Control, bodyLimit: string, traceUrl?: string): Router {
  const router = express.Router();
  router.use(express.json({ limit: bodyLimit }));
  const api: Api = { control, traceUrl };
  for (const [method, path, handler, access] of ROUTES) {
    const answer: RequestHandler = (req, res) => handler(api, req, res);
    router[method](path, ...(access ? [access] : []), answer);
  }
  router.use((_req, res) => {
    res.status(404).json({ error: 'not_found', message: 'no such API route' });
  });
  return router;
}
