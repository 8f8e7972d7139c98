// Bull Board under /dashboard/queues. Bull Board has no auth and its own routes would add any payload to a queue, so:
// - the caller mounts it behind the mutation guard (mutations.ts: no cross-site requests, JSON bodies only) and
//   `authenticate`; viewers get a second board built in readOnlyMode (real enforcement); operators get the full board but
//   not its settings (global concurrency, rate limit) nor obliterate, which stay with admins;
// - a login limited to job groups sees only its groups' queues (Bull Board's visibility guard: other queues answer 404);
// - adds ("Add job", "Duplicate") go through the adapter's addJob, which is Queues.enqueue (validation, overlap rules,
//   jobscope's job options, trigger name 'manual'): 400 with the schema errors; data edits and retries are checked against
//   the job's params before Bull Board sees them;
// - its pause/resume are jobscope's (schedule included, remembered across restarts);
// - schedules are code: its scheduler edit and remove are refused by the adapter (409 schedule_is_code, naming the job
//   file), and edits of the run a scheduler holds for its next fire (data, delay, priority, promote) by the guard; "Run
//   now" of a scheduler goes through Queues.enqueue as a manual trigger, and "Promote all" leaves the next fires where they are;
// - everything it displays (data, result, progress, name, logs) passes through the token mask;
// - its page loads no web font from Google (the CSP allows none): the UI falls back to system-ui and the platform's monospace.
import path from 'node:path';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { AppViewRoute } from '@bull-board/api/typings/app';
import type { Job, Queue } from 'bullmq';
import express, { type NextFunction, type Request, type RequestHandler, type Response, type Router } from 'express';
import { OverlapSkippedError, ParamsError } from '../errors.ts';
import type { ParamsIssue, RegisteredJob } from '../interfaces.ts';
import { maskTokens, maskValue } from '../redact.ts';
import type { Queues } from '../control/queues.ts';
import { pauseJob, resumeJob } from '../control/schedules.ts';
import { loginOf, seesJob } from './auth.ts';
import { jsonBody, MUTATING } from './mutations.ts';

export const BOARD_PATH = '/dashboard/queues';

/** Where a job file is, as a user would type it: relative to the working directory when inside it. */
function fileOf(job: RegisteredJob): string {
  const rel = path.relative(process.cwd(), job.file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : job.file;
}

/** Why a schedule cannot be changed from Bull Board: the job file is the one place a schedule is defined. */
export function scheduleIsCode(job: RegisteredJob): string {
  return job.schedule
    ? `the schedule of "${job.name}" is defined in its job file (${fileOf(job)}): change the schedule there; jobscope start/server applies it at start`
    : `"${job.name}" has no schedule in its job file (${fileOf(job)}): schedules are code; jobscope start/server removes any other scheduler at start`;
}

/** An error Bull Board's error handler turns into an HTTP status (it reads `statusCode`). */
class BoardError extends Error {
  readonly statusCode: number;
  /** The code of jobscope's error table (README) for this refusal. */
  readonly answerCode: string;
  /** The schema errors of refused data. */
  readonly issues?: ParamsIssue[];
  constructor(statusCode: number, message: string, answerCode: string, issues?: ParamsIssue[]) {
    super(message);
    this.statusCode = statusCode;
    this.answerCode = answerCode;
    this.issues = issues;
  }
}

/** The BullMQ ids of the runs the job's schedulers hold for their next fire. */
async function nextFires(queues: Queues, job: string): Promise<Set<string>> {
  const schedulers = await queues.queue(job).getJobSchedulers(0, -1);
  return new Set(schedulers.filter((s) => s.key && s.next).map((s) => `repeat:${s.key}:${s.next}`));
}

class JobscopeQueueAdapter extends BullMQAdapter {
  private readonly queues: Queues;
  private readonly jobName: string;

  constructor(queue: Queue, job: RegisteredJob, queues: Queues, readOnlyMode: boolean) {
    super(queue, {
      readOnlyMode,
      allowRetries: !readOnlyMode,
      description: job.description,
      displayName: job.name,
      ...(job.definition.params ? { jobDataSchema: job.definition.params } : {}),
      // Each run links to jobscope's Run page (token claims, live logs).
      externalJobUrl: (j) => ({
        displayText: 'jobscope run page',
        href: `/dashboard/run.html?id=${encodeURIComponent(`${job.name}:${j.id}`)}`,
      }),
    });
    this.queues = queues;
    this.jobName = job.name;
    // Bull Board asks this for every route about this queue, its list of queues, and pause/resume all.
    this.setVisibilityGuard((req) => {
      const login = loginOf(req.headers);
      const current = queues.registry.has(this.jobName) ? queues.registry.get(this.jobName) : undefined;
      return login !== undefined && seesJob(login, current);
    });
    for (const field of ['data', 'returnValue', 'progress'] as const) this.setFormatter(field, maskValue);
    // Bull Board hands the name formatter the whole job.
    this.setFormatter('name', (job: { name?: unknown }) => maskTokens(String(job.name ?? '')));
  }

  /** Bull Board's add: same path as the API (validation, overlap, job options); the trigger is 'manual'. */
  override async addJob(_name: string, data: unknown): Promise<Job> {
    try {
      const { runId } = await this.queues.enqueue(this.jobName, data ?? {}, { trigger: 'manual' });
      return await this.queues.getJob(runId);
    } catch (err) {
      if (err instanceof ParamsError) throw new BoardError(400, err.message, 'invalid_params', err.issues);
      if (err instanceof OverlapSkippedError) throw new BoardError(409, err.message, 'overlap_skipped');
      throw err;
    }
  }

  /** Bull Board's pause/resume (one queue or all) are jobscope's: the schedule stops too, on every host, across restarts. */
  override async pause(): Promise<void> {
    await pauseJob(this.queues, this.jobName);
  }

  override async resume(): Promise<void> {
    await resumeJob(this.queues, this.jobName);
  }

  /** Bull Board's "Run now" of a scheduler: a manual run through the same path as the API, not a raw add of its template. */
  override async runJobSchedulerNow(id: string): Promise<Job | 'not-found'> {
    const scheduler = await this.queues.queue(this.jobName).getJobScheduler(id);
    if (!scheduler) return 'not-found';
    return this.addJob('manual', scheduler.template?.data ?? {});
  }

  /** Promote all: every delayed run but the schedulers' next fires (those are the schedule: see the guard's notNextFire). */
  override async promoteAll(): Promise<void> {
    const held = await nextFires(this.queues, this.jobName);
    const delayed = (await this.queues.queue(this.jobName).getJobs(['delayed'], 0, -1)).filter((j) => j?.id);
    if (!delayed.some((j) => held.has(j.id!))) return super.promoteAll();
    // A run that stopped being delayed meanwhile (promoted, cancelled) has nothing left to promote.
    await Promise.all(delayed.filter((j) => !held.has(j.id!)).map((j) => j.promote().catch(() => undefined)));
  }

  // Schedules are code: an edit or removal here would change what Redis fires, show nowhere else (`jobscope list`, the
  // Jobs page) and be reverted at the next start.
  override async updateJobScheduler(): Promise<never> {
    throw new BoardError(409, scheduleIsCode(this.queues.registry.get(this.jobName)), 'schedule_is_code');
  }

  override async removeJobScheduler(): Promise<never> {
    throw new BoardError(409, scheduleIsCode(this.queues.registry.get(this.jobName)), 'schedule_is_code');
  }

  override async getJobLogs(id: string): Promise<string[]> {
    return (await super.getJobLogs(id)).map(maskTokens);
  }
}

function refuse(res: Response, status: number, code: string, message: string, issues?: ParamsIssue[] | { runId: string }[]): void {
  // Bull Board's UI reads `error.key` and `message`; jobscope's clients read `code` and `issues`.
  res.status(status).json({ error: { key: code }, code, message, ...(issues ? { issues } : {}) });
}

/** The job a route of the board is about, if the login sees it; a queue it cannot see is left to Bull Board (404). */
function jobOf(queues: Queues, req: Request): RegisteredJob | undefined {
  const name = String(req.params.queueName);
  const job = queues.registry.has(name) ? queues.registry.get(name) : undefined;
  return job && seesJob(req, job) ? job : undefined;
}

// Settings and destruction are an admin's: what the job file sets (concurrency, rate limit), and obliterate (the queue
// and every run of it gone). Operators run jobs; they do not reconfigure them.
const adminsOnly: RequestHandler = (req, res, next) => {
  if (req.role === 'admin') return next();
  refuse(res, 403, 'forbidden', 'this action needs an admin login: operators run jobs, admins change their settings');
};

/** Edited data must be valid for the job's params: 400 with the schema errors. */
function validData(queues: Queues, pick: (body: Record<string, unknown>) => unknown): RequestHandler {
  return (req, res, next) => {
    const job = jobOf(queues, req);
    if (!job) return next();
    const body = (req.body ?? {}) as Record<string, unknown>;
    const issues = job.validate(structuredClone(pick(body) ?? {}));
    if (issues) return refuse(res, 400, 'invalid_params', new ParamsError(job.name, issues).message, issues);
    next();
  };
}

/**
 * The run a scheduler holds for its next fire is the schedule too: moving it, changing its data or priority, or promoting
 * it would change what fires, and when.
 */
function notNextFire(queues: Queues, action: string, hint?: (job: RegisteredJob) => string): RequestHandler {
  return async (req, res, next) => {
    const job = jobOf(queues, req);
    const id = String(req.params.jobId);
    if (!job || !id.startsWith('repeat:') || !(await nextFires(queues, job.name)).has(id)) return next();
    const message = `cannot ${action} ${job.name}:${id}: it is the next fire of a schedule, and ${scheduleIsCode(job)}${hint?.(job) ?? ''}`;
    refuse(res, 409, 'schedule_is_code', message);
  };
}

/** A retry runs the stored data again: it must still be valid for the job's params (a schema may have changed since). */
function retryValid(queues: Queues): RequestHandler {
  return async (req, res, next) => {
    const job = jobOf(queues, req);
    if (!job) return next();
    const found = await queues.queue(job.name).getJob(String(req.params.jobId));
    const issues = found ? job.validate(structuredClone(found.data ?? {})) : null;
    if (issues) return refuse(res, 400, 'invalid_params', `cannot retry: ${new ParamsError(job.name, issues).message}`, issues);
    next();
  };
}

/** Retry all (failed or completed): refused when any of those runs has data that is no longer valid, listing them. */
function retryAllValid(queues: Queues): RequestHandler {
  return async (req, res, next) => {
    const job = jobOf(queues, req);
    const status = String(req.params.queueStatus);
    if (!job || (status !== 'failed' && status !== 'completed')) return next();
    const jobs = await queues.queue(job.name).getJobs([status], 0, -1);
    const bad = jobs
      .filter((j) => j && job.validate(structuredClone(j.data ?? {})) !== null)
      .map((j) => ({ runId: `${job.name}:${j.id}` }));
    if (!bad.length) return next();
    refuse(res, 400, 'invalid_params', `cannot retry: ${bad.length} run(s) have data that no longer matches the params`, bad);
  };
}

const promoteHint = (job: RegisteredJob) => `; to run "${job.name}" now, use Run now on the jobscope Jobs page`;

// Kept on Bull Board's private routes: handlerHooks.before cannot answer `code`/`issues`; these act on the BullMQ job directly.
/**
 * Bull Board's own REST routes (9.10.1, dist/routes.js), checked before its router. The other checks (add, promote all,
 * scheduler edit and remove) are in the queue adapter above, through its public methods.
 */
function guardRoutes(queues: Queues): [method: 'put' | 'patch', path: string, ...checks: RequestHandler[]][] {
  return [
    ['put', '/api/queues/:queueName/concurrency', adminsOnly],
    ['put', '/api/queues/:queueName/rate-limit', adminsOnly],
    ['put', '/api/queues/:queueName/obliterate', adminsOnly],
    ['patch', '/api/queues/:queueName/:jobId/delay', notNextFire(queues, 'reschedule')],
    ['patch', '/api/queues/:queueName/:jobId/priority', notNextFire(queues, 'change the priority of')],
    ['put', '/api/queues/:queueName/:jobId/promote', notNextFire(queues, 'promote', promoteHint)],
    ['patch', '/api/queues/:queueName/:jobId/update-data', notNextFire(queues, 'change the data of'), validData(queues, (b) => b.jobData)],
    ['put', '/api/queues/:queueName/:jobId/retry', retryValid(queues)],
    ['put', '/api/queues/:queueName/retry/:queueStatus', retryAllValid(queues)],
  ];
}

/** The checks in front of Bull Board's router (after the body parser): settings for admins, next fires, valid data. */
function guard(queues: Queues): Router {
  const router = express.Router();
  for (const [method, route, ...checks] of guardRoutes(queues)) router[method](route, ...checks);
  return router;
}

// Kept, a regex over the rendered page: Bull Board 9.10 has no option (uiConfig, theme) that leaves its web-font link out.
/** Bull Board's page links IBM Plex from fonts.googleapis.com: drop that link, so the page asks nothing of another site. */
const WEB_FONT_LINK = /<link\b[^>]*\bhref="https:\/\/fonts\.(?:googleapis|gstatic)\.com\/[^"]*"[^>]*>\s*/g;

export function stripWebFonts(html: string): string {
  return html.replace(WEB_FONT_LINK, '');
}

/**
 * Bull Board's Express adapter, its page without the web-font link (the UI falls back to system-ui): the page is rendered
 * as the adapter's own setEntryRoute does, through its declared API (the route's handler, `this.app`, then `res.render`),
 * and passed through stripWebFonts.
 */
class BoardServer extends ExpressAdapter {
  override setEntryRoute(routeDef: AppViewRoute): ExpressAdapter {
    this.app[routeDef.method](routeDef.route, (_req: Request, res: Response, next: NextFunction) => {
      const { name, params } = routeDef.handler({ basePath: this.basePath, uiConfig: this.uiConfig });
      res.render(name, params, (err: Error | null, html?: string) => (err ? next(err) : res.send(stripWebFonts(html ?? ''))));
    });
    return this;
  }
}

export interface Boards {
  /** Mount at BOARD_PATH after `authenticate`: picks the admin or the read-only board by `req.role`. */
  router: RequestHandler;
}

export function createBoards(queues: Queues, bodyLimit: string): Boards {
  const build = (readOnly: boolean): RequestHandler => {
    const serverAdapter = new BoardServer().setBasePath(BOARD_PATH);
    createBullBoard({
      queues: queues.all().map((q) => new JobscopeQueueAdapter(q, queues.registry.get(q.name), queues, readOnly)),
      serverAdapter,
      options: {
        uiConfig: {
          boardTitle: readOnly ? 'jobscope (read-only)' : 'jobscope',
          miscLinks: [{ text: 'jobscope pages', url: '/dashboard/' }],
          hideDocsLink: true,
        },
      },
    });
    serverAdapter.setErrorHandler(boardError);
    return serverAdapter.getRouter() as RequestHandler;
  };
  const full = build(false);
  const readOnly = build(true);
  const checks = guard(queues);
  const json = jsonBody(bodyLimit);
  return {
    router: (req, res, next) => {
      if (req.role !== 'admin' && req.role !== 'operator') {
        // The read-only board would answer 405 QUEUE_READ_ONLY: answer as the API does.
        if (MUTATING.has(req.method)) return refuse(res, 403, 'forbidden', 'read-only user: this action needs an operator or admin login');
        return readOnly(req, res, next);
      }
      json(req, res, (err?: unknown) => {
        if (err) return next(err);
        checks(req, res, (err2?: unknown) => (err2 ? next(err2) : full(req, res, next)));
      });
    },
  };
}

/**
 * Bull Board's error handler answers 500 for anything thrown, BullMQ's refusals of a job in the wrong state included
 * ("Job 3 is not in the delayed state" when promoting a completed run). Those are the caller's mistake or a race with a
 * worker, not a server fault: BullMQ marks them with a negative `code` (-1 no such job, -5 no such parent: 404; wrong
 * state, lock, pending or failed children: 409).
 */
function boardError(error: Error & { statusCode?: number; code?: unknown; answerCode?: string; issues?: ParamsIssue[] }): {
  status: BoardStatus;
  body: Record<string, unknown>;
} {
  const fromBullMQ = typeof error.code === 'number' && error.code < 0 ? (error.code === -1 || error.code === -5 ? 404 : 409) : undefined;
  // Bull Board's own errors carry their status (statusCode), as its handler expects; anything else is a fault of ours: 500.
  const status = (error.statusCode ?? fromBullMQ ?? 500) as BoardStatus;
  // `error.key` is for Bull Board's UI (its translations); `code` is jobscope's one style (the README's error table).
  const [key, code] =
    fromBullMQ === 404
      ? ['ERRORS.JOB_NOT_FOUND', 'unknown_run']
      : fromBullMQ === 409
        ? ['ERR_JOB_STATE', 'run_state']
        : status < 500
          ? [error.answerCode ?? 'ERRORS.BAD_REQUEST', error.answerCode ?? (status === 404 ? 'not_found' : 'bad_request')]
          : ['ERRORS.INTERNAL_SERVER_ERROR', 'internal'];
  return { status, body: { error: { key }, code, message: error.message, ...(error.issues ? { issues: error.issues } : {}) } };
}

/** The statuses Bull Board's adapter passes on (its HTTPStatus). */
type BoardStatus = 400 | 403 | 404 | 405 | 409 | 500;
