// The JSON API under /api (DESIGN.md's table plus what the dashboard pages need). Every route requires a login; every
// mutation requires the admin login. Nothing here ever returns a raw token: runs carry claims, /tokens carries metadata.
import express, { type Router } from 'express';
import type { RunReport, TokenClaims, TriggerOptions } from '../interfaces.ts';
import { describeSchedule } from '../jobs/schedule.ts';
import type { JobSummary } from '../runtime/queues.ts';
import type { Runtime } from '../runtime/runtime.ts';
import { adminOnly } from './auth.ts';

/** A job as GET /api/jobs lists it: DESIGN.md's fields, plus what the Jobs page shows. */
export interface JobView extends JobSummary {
  scheduleText: string;
  params: Record<string, unknown> | null;
  overlap: string;
  attempts: number;
  concurrency: number;
  concurrencyPerWorker: number;
  rateLimit: { max: number; durationMs: number } | null;
  misfire: string;
  misfireGraceMs: number;
  timeoutMs: number | null;
  audience: string[];
  scope: string[];
  lastRun: Pick<RunReport, 'runId' | 'state' | 'outcome' | 'trigger' | 'createdAt' | 'finishedAt'> | null;
}

/** A run as GET /api/runs/:runId reports it: the RunReport plus the claims of each attempt's token(s). */
export interface RunView extends RunReport {
  claims: TokenClaims[];
}

const CLAIM_FIELDS = ['iss', 'sub', 'aud', 'scope', 'jti', 'iat', 'nbf', 'exp', 'run', 'att'] as const;

/** Only the known claim fields survive, whatever was stored. */
function pickClaims(text: string): TokenClaims | null {
  try {
    const raw = JSON.parse(text) as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const f of CLAIM_FIELDS) out[f] = raw[f];
    return out as unknown as TokenClaims;
  } catch {
    return null;
  }
}

export async function jobView(runtime: Runtime, name: string): Promise<JobView> {
  const job = runtime.registry.get(name);
  const [summary, recent] = await Promise.all([runtime.queues.summary(name), runtime.queues.recentRuns(name, 5)]);
  // A scheduler keeps its next fire as a delayed job: that is the schedule, not the last run.
  const last = recent.find((r) => r.state !== 'delayed');
  return {
    ...summary,
    scheduleText: describeSchedule(job.schedule),
    params: job.definition.params ?? null,
    overlap: job.overlap,
    attempts: job.attempts,
    concurrency: job.concurrency,
    concurrencyPerWorker: job.concurrencyPerWorker,
    rateLimit: job.rateLimit ?? null,
    misfire: job.misfire,
    misfireGraceMs: job.misfireGraceMs,
    timeoutMs: job.timeoutMs ?? null,
    audience: job.audience,
    scope: job.scope,
    lastRun: last
      ? {
          runId: last.runId,
          state: last.state,
          outcome: last.outcome,
          trigger: last.trigger,
          createdAt: last.createdAt,
          finishedAt: last.finishedAt,
        }
      : null,
  };
}

export async function runView(runtime: Runtime, runId: string): Promise<RunView> {
  const report = await runtime.queues.report(runId);
  const stored = await runtime.tokens.history(report.runId);
  const claims = stored
    .map(pickClaims)
    .filter((c): c is TokenClaims => c !== null)
    .sort((a, b) => a.att - b.att || a.iat - b.iat);
  return { ...report, claims };
}

/** What POST /api/jobs/:name/runs accepts. */
const TRIGGER_FIELDS = ['data', 'trigger', 'delay', 'at', 'priority', 'key'];

function objectBody(body: unknown): body is Record<string, unknown> {
  return typeof body === 'object' && body !== null && !Array.isArray(body);
}

export function apiRouter(runtime: Runtime, bodyLimit: string): Router {
  const api = express.Router();
  api.use(express.json({ limit: bodyLimit }));

  api.get('/me', (req, res) => {
    res.json({ user: req.user, role: req.role });
  });

  api.get('/jobs', async (_req, res) => {
    res.json(await Promise.all(runtime.registry.names.map((name) => jobView(runtime, name))));
  });
  api.get('/jobs/:name', async (req, res) => {
    res.json(await jobView(runtime, String(req.params.name)));
  });
  api.get('/jobs/:name/runs', async (req, res) => {
    const limit = Math.min(100, Math.max(1, Number(req.query.limit) || 20));
    res.json(await runtime.queues.recentRuns(String(req.params.name), limit));
  });
  api.post('/jobs/:name/runs', adminOnly, async (req, res) => {
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
    const { runId, existing } = await runtime.queues.enqueue(String(req.params.name), body.data ?? {}, {
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
  api.post('/jobs/:name/pause', adminOnly, async (req, res) => {
    await runtime.pause(String(req.params.name));
    res.json({ name: String(req.params.name), paused: true });
  });
  api.post('/jobs/:name/resume', adminOnly, async (req, res) => {
    await runtime.resume(String(req.params.name));
    res.json({ name: String(req.params.name), paused: false });
  });

  api.get('/runs/:runId', async (req, res) => {
    res.json(await runView(runtime, String(req.params.runId)));
  });
  api.post('/runs/:runId/cancel', adminOnly, async (req, res) => {
    res.json(await runtime.cancel(String(req.params.runId), `cancelled through the API by ${req.user}`));
  });

  api.get('/tokens', async (_req, res) => {
    res.json(await runtime.tokens.list());
  });

  api.get('/workers', async (_req, res) => {
    const out = await Promise.all(
      runtime.queues.all().map(async (queue) => {
        const clients = await queue.getWorkers();
        return {
          job: queue.name,
          workers: clients.map((c) => ({ name: c.name ?? null, addr: c.addr ?? null, age: Number(c.age ?? 0), idle: Number(c.idle ?? 0) })),
        };
      }),
    );
    res.json(out);
  });

  api.use((_req, res) => {
    res.status(404).json({ error: 'not_found', message: 'no such API route' });
  });
  return api;
}
