// The JSON API under /api (DESIGN.md's table plus what the dashboard pages need). Every route requires a login; every
// mutation requires the admin login. Nothing here ever returns a raw token: runs carry claims, /tokens carries metadata.
import express, { type Router } from 'express';
import type { Control } from '../control/control.ts';
import type { TriggerOptions } from '../interfaces.ts';
import { adminOnly } from './auth.ts';

/** What POST /api/jobs/:name/runs accepts. */
const TRIGGER_FIELDS = ['data', 'trigger', 'delay', 'at', 'priority', 'key'];

function objectBody(body: unknown): body is Record<string, unknown> {
  return typeof body === 'object' && body !== null && !Array.isArray(body);
}

export function apiRouter(control: Control, bodyLimit: string): Router {
  const api = express.Router();
  api.use(express.json({ limit: bodyLimit }));

  api.get('/me', (req, res) => {
    res.json({ user: req.user, role: req.role });
  });

  api.get('/jobs', async (_req, res) => {
    res.json(await control.jobs());
  });
  api.get('/jobs/:name', async (req, res) => {
    res.json(await control.job(String(req.params.name)));
  });
  api.get('/jobs/:name/runs', async (req, res) => {
    const limit = Math.min(100, Math.max(1, Number(req.query.limit) || 20));
    res.json(await control.recentRuns(String(req.params.name), limit));
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
  api.post('/jobs/:name/pause', adminOnly, async (req, res) => {
    await control.pause(String(req.params.name));
    res.json({ name: String(req.params.name), paused: true });
  });
  api.post('/jobs/:name/resume', adminOnly, async (req, res) => {
    await control.resume(String(req.params.name));
    res.json({ name: String(req.params.name), paused: false });
  });

  api.get('/runs/:runId', async (req, res) => {
    res.json(await control.run(String(req.params.runId)));
  });
  api.post('/runs/:runId/cancel', adminOnly, async (req, res) => {
    res.json(await control.cancel(String(req.params.runId), `cancelled through the API by ${req.user}`));
  });

  api.get('/tokens', async (_req, res) => {
    res.json(await control.liveTokens());
  });

  api.get('/workers', async (_req, res) => {
    res.json(await control.workers());
  });

  api.use((_req, res) => {
    res.status(404).json({ error: 'not_found', message: 'no such API route' });
  });
  return api;
}
