// The JSON API under /api (DESIGN.md's table plus what the dashboard pages need). Every route requires a login; every
// mutation requires the admin login. Nothing here ever returns a raw token: runs carry claims, /tokens carries metadata.
import express, { type RequestHandler, type Router } from 'express';
import type { Control } from '../control/control.ts';
import type { TriggerOptions } from '../interfaces.ts';
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

export function apiRouter(control: Control, bodyLimit: string, traceUrl?: string): Router {
  const api = express.Router();
  api.use(express.json({ limit: bodyLimit }));

  api.get('/me', (req, res) => {
    res.json({ user: req.user, role: req.role, ...(req.groups ? { groups: req.groups } : {}) });
  });

  api.get('/jobs', async (req, res) => {
    const visible = visibleJobs(req, control.registry);
    res.json((await control.jobs()).filter((j) => !visible || visible.includes(j.name)));
  });
  api.get('/jobs/:name', async (req, res) => {
    res.json(await control.job(String(req.params.name)));
  });
  api.get('/jobs/:name/stats', async (req, res) => {
    const extra = unknownParam('stats', req.query);
    if (extra) return void res.status(400).json({ error: 'bad_query', param: paramOf(extra), message: extra });
    const tz = typeof req.query.tz === 'string' && req.query.tz ? req.query.tz : 'UTC';
    try {
      res.json(await control.jobStats(String(req.params.name), tz));
    } catch (err) {
      if (err instanceof RunQueryError)
        return void res.status(400).json({ error: 'bad_query', param: paramOf(err.message), message: err.message });
      throw err;
    }
  });
  api.get('/jobs/:name/runs', async (req, res) => {
    const limit = unknownParam('jobRuns', req.query) ?? limitOf(req.query.limit, 100);
    if (typeof limit === 'string') return void res.status(400).json({ error: 'bad_query', param: paramOf(limit), message: limit });
    res.json(await control.recentRuns(String(req.params.name), limit ?? 20));
  });
  api.post('/jobs/:name/runs', operatorOnly, async (req, res) => {
    const body: unknown = req.body ?? {};
    if (!objectBody(body)) {
      res.status(400).json({ error: 'bad_request', message: 'body must be a JSON object: { "data": { ... } }' });
      return;
    }
    // The dashboard's Run-now form says 'manual' (a person clicked); other callers are 'api'.
    const trigger = body.trigger ?? 'api';
    if (trigger !== 'api' && trigger !== 'manual') {
      res
        .status(400)
        .json({ error: 'bad_request', param: 'trigger', message: `trigger: must be "api" or "manual", not ${JSON.stringify(trigger)}` });
      return;
    }
    const unknown = Object.keys(body).filter((k) => !TRIGGER_FIELDS.includes(k));
    if (unknown.length) {
      const field = unknown[0].slice(0, 40);
      res
        .status(400)
        .json({ error: 'bad_request', param: field, message: `${field}: not a field of a trigger; allowed: ${TRIGGER_FIELDS.join(', ')}` });
      return;
    }
    const { delay, at, priority, key } = body as TriggerOptions;
    const { runId, existing } = await control.trigger(String(req.params.name), body.data ?? {}, {
      by: `user:${req.user}`,
      trigger,
      delay,
      at,
      priority,
      key,
    });
    // A key that matched a kept run: that run, not a new one.
    if (existing) res.status(200).json({ runId, existing: true });
    else res.status(202).json({ runId });
  });
  api.post('/jobs/:name/pause', operatorOnly, async (req, res) => {
    await control.pause(String(req.params.name));
    res.json({ name: String(req.params.name), paused: true });
  });
  api.post('/jobs/:name/resume', operatorOnly, async (req, res) => {
    await control.resume(String(req.params.name));
    res.json({ name: String(req.params.name), paused: false });
  });

  // The run history across jobs: ?job=a,b&state=failed,timeout&trigger=schedule&by=user:ada&from=&to=&cursor=&limit=
  api.get('/runs', async (req, res) => {
    const query = runQuery(req.query as Record<string, unknown>);
    if (typeof query === 'string') return void res.status(400).json({ error: 'bad_query', param: paramOf(query), message: query });
    // A login limited to some job groups sees only their runs.
    const visible = visibleJobs(req, control.registry);
    if (visible) query.jobs = query.jobs ?? visible;
    try {
      res.json(await control.listRuns(query));
    } catch (err) {
      if (err instanceof RunQueryError)
        return void res.status(400).json({ error: 'bad_query', param: paramOf(err.message), message: err.message });
      throw err;
    }
  });
  api.get('/runs/:runId', async (req, res) => {
    const run = await control.runDetail(String(req.params.runId));
    // traceId is 32 hex digits (trace.ts): safe to put in the operator's URL template.
    res.json(traceUrl && run.traceId ? { ...run, traceUrl: traceUrl.replace('{traceId}', run.traceId) } : run);
  });
  api.post('/runs/:runId/retry', operatorOnly, async (req, res) => {
    const runId = String(req.params.runId);
    const { retried, state } = await control.retry(runId, `user:${req.user}`);
    if (!retried) {
      return void res.status(409).json({ error: 'not_failed', message: `run ${runId} is ${state}: only a failed run can be retried` });
    }
    res.json({ runId, state });
  });
  api.post('/runs/:runId/cancel', operatorOnly, async (req, res) => {
    // jobscope's own pages send Sec-Fetch-Site: same-origin (the mutation guard lets nothing cross-site through).
    const where = req.headers['sec-fetch-site'] === 'same-origin' ? 'from the dashboard' : 'through the API';
    res.json(await control.cancel(String(req.params.runId), `cancelled by ${req.user} ${where}`));
  });

  // The dashboard's first page: runs by outcome (24 h, 7 days), runs per hour, jobs failing now, workers, live tokens.
  api.get('/overview', async (req, res) => {
    res.json(await control.overview(visibleJobs(req, control.registry) ?? control.registry.names));
  });

  api.get('/tokens', async (req, res) => {
    const visible = visibleJobs(req, control.registry);
    res.json((await control.liveTokens()).filter((t) => !visible || visible.includes(t.job)));
  });

  // The executor registry: every worker process's heartbeat, live and recently dead (alive: false).
  api.get('/workers', async (req, res) => {
    const visible = visibleJobs(req, control.registry);
    res.json((await control.liveWorkers()).filter((w) => !visible || w.jobs.some((j) => visible.includes(j))));
  });
  // The Redis connections of each job queue, as BullMQ lists them (what GET /api/workers answered before 0.2).
  api.get('/workers/connections', async (req, res) => {
    const visible = visibleJobs(req, control.registry);
    res.json((await control.workers()).filter((q) => !visible || visible.includes(q.job)));
  });

  api.use((_req, res) => {
    res.status(404).json({ error: 'not_found', message: 'no such API route' });
  });
  return api;
}
