// The JSON API under /api (DESIGN.md's table plus what the dashboard pages need). Every route requires a login; every
// mutation requires the admin login. Nothing here ever returns a raw token: runs carry claims, /tokens carries metadata.
import express, { type Router } from 'express';
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
  const limit = q.limit === undefined ? undefined : Number(q.limit);
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) return `limit: must be an integer from 1 to ${MAX_LIMIT}`;
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
    limit: limit === undefined ? undefined : Math.min(limit, MAX_LIMIT),
  };
}

function objectBody(body: unknown): body is Record<string, unknown> {
  return typeof body === 'object' && body !== null && !Array.isArray(body);
}

export function apiRouter(control: Control, bodyLimit: string): Router {
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
    const tz = typeof req.query.tz === 'string' && req.query.tz ? req.query.tz : 'UTC';
    try {
      res.json(await control.jobStats(String(req.params.name), tz));
    } catch (err) {
      if (err instanceof RunQueryError) return void res.status(400).json({ error: 'bad_query', message: err.message });
      throw err;
    }
  });
  api.get('/jobs/:name/runs', async (req, res) => {
    const limit = Math.min(100, Math.max(1, Number(req.query.limit) || 20));
    res.json(await control.recentRuns(String(req.params.name), limit));
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
      res.status(400).json({ error: 'bad_request', message: `trigger must be "api" or "manual", not ${JSON.stringify(trigger)}` });
      return;
    }
    const unknown = Object.keys(body).filter((k) => !TRIGGER_FIELDS.includes(k));
    if (unknown.length) {
      res.status(400).json({ error: 'bad_request', message: `unknown field "${unknown[0]}"; allowed: ${TRIGGER_FIELDS.join(', ')}` });
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
    if (typeof query === 'string') return void res.status(400).json({ error: 'bad_query', message: query });
    // A login limited to some job groups sees only their runs.
    const visible = visibleJobs(req, control.registry);
    if (visible) query.jobs = query.jobs ?? visible;
    try {
      res.json(await control.listRuns(query));
    } catch (err) {
      if (err instanceof RunQueryError) return void res.status(400).json({ error: 'bad_query', message: err.message });
      throw err;
    }
  });
  api.get('/runs/:runId', async (req, res) => {
    res.json(await control.runDetail(String(req.params.runId)));
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
    res.json(await control.cancel(String(req.params.runId), `cancelled through the API by ${req.user}`));
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
