// Bull Board under /dashboard/queues. Bull Board has no auth and its own routes would add any payload to a queue, so:
// - the caller mounts it behind `authenticate`; viewers get a second board built in readOnlyMode (real enforcement);
// - adds ("Add job", "Duplicate"), data edits and retries are checked against the job's params before Bull Board sees them,
//   answering 400 with the schema errors, and the adapter's addJob goes through Queues.enqueue (validation, overlap rules,
//   jobscope's job options, trigger name 'manual') in case a route reaches it some other way;
// - its pause/resume are jobscope's (schedule included, remembered across restarts);
// - everything it displays (data, result, progress, name, logs) passes through the token mask.
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Job, Queue } from 'bullmq';
import express, { type NextFunction, type Request, type RequestHandler, type Response, type Router } from 'express';
import { OverlapSkippedError, ParamsError } from '../errors.ts';
import type { ParamsIssue, RegisteredJob } from '../interfaces.ts';
import { maskTokens } from '../log.ts';
import type { Queues } from '../runtime/queues.ts';
import { pauseJob, resumeJob } from '../runtime/scheduler.ts';

export const BOARD_PATH = '/dashboard/queues';

/** Masks anything JWT-like in a value Bull Board is about to show. */
export function maskValue(value: unknown): unknown {
  if (value === undefined || value === null) return value;
  if (typeof value === 'string') return maskTokens(value);
  const text = JSON.stringify(value);
  if (text === undefined) return value;
  const masked = maskTokens(text);
  return masked === text ? value : (JSON.parse(masked) as unknown);
}

/** An error Bull Board's error handler turns into an HTTP status (it reads `statusCode`). */
class BoardError extends Error {
  readonly statusCode: number;
  constructor(statusCode: number, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
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
    for (const field of ['data', 'returnValue', 'progress'] as const) this.setFormatter(field, maskValue);
    // Bull Board hands the name formatter the whole job.
    this.setFormatter('name', (job: { name?: unknown }) => maskTokens(String(job.name ?? '')));
  }

  /** Bull Board's add: same path as the API (validation, overlap, job options); the trigger is 'manual'. */
  override async addJob(_name: string, data: unknown): Promise<Job> {
    try {
      const { runId } = await this.queues.enqueue(this.jobName, data ?? {}, 'manual');
      return await this.queues.getJob(runId);
    } catch (err) {
      if (err instanceof ParamsError) throw new BoardError(400, err.message);
      if (err instanceof OverlapSkippedError) throw new BoardError(409, err.message);
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

  override async getJobLogs(id: string): Promise<string[]> {
    return (await super.getJobLogs(id)).map(maskTokens);
  }
}

function refuse(res: Response, status: number, code: string, message: string, issues?: ParamsIssue[] | { runId: string }[]): void {
  // Bull Board's UI reads `error.key` and `message`; jobscope's clients read `code` and `issues`.
  res.status(status).json({ error: { key: code }, code, message, ...(issues ? { issues } : {}) });
}

/**
 * Checks the routes that put data in front of a worker: add (and Duplicate, which uses add), update-data, and retries.
 * Runs after the body parser, before Bull Board's router.
 */
function guard(queues: Queues): Router {
  const router = express.Router();
  const jobOf = (req: Request): RegisteredJob | undefined => {
    const name = String(req.params.queueName);
    return queues.registry.has(name) ? queues.registry.get(name) : undefined;
  };
  const checkData =
    (pick: (body: Record<string, unknown>) => unknown): RequestHandler =>
    (req, res, next) => {
      const job = jobOf(req);
      if (!job) return next();
      const body = (req.body ?? {}) as Record<string, unknown>;
      const issues = job.validate(structuredClone(pick(body) ?? {}));
      if (issues) return refuse(res, 400, 'ERR_PARAMS', new ParamsError(job.name, issues).message, issues);
      next();
    };

  router.post(
    '/api/queues/:queueName/add',
    checkData((b) => b.data),
  );
  router.patch(
    '/api/queues/:queueName/:jobId/update-data',
    checkData((b) => b.jobData),
  );
  router.put('/api/queues/:queueName/:jobId/retry', async (req: Request, res: Response, next: NextFunction) => {
    const job = jobOf(req);
    if (!job) return next();
    const found = await queues.queue(job.name).getJob(String(req.params.jobId));
    const issues = found ? job.validate(structuredClone(found.data ?? {})) : null;
    if (issues) return refuse(res, 400, 'ERR_PARAMS', `cannot retry: ${new ParamsError(job.name, issues).message}`, issues);
    next();
  });
  router.put('/api/queues/:queueName/retry/:queueStatus', async (req: Request, res: Response, next: NextFunction) => {
    const job = jobOf(req);
    const status = String(req.params.queueStatus);
    if (!job || (status !== 'failed' && status !== 'completed')) return next();
    const jobs = await queues.queue(job.name).getJobs([status], 0, -1);
    const bad = jobs
      .filter((j) => j && job.validate(structuredClone(j.data ?? {})) !== null)
      .map((j) => ({ runId: `${job.name}:${j.id}` }));
    if (bad.length) {
      return refuse(res, 400, 'ERR_PARAMS', `cannot retry: ${bad.length} run(s) have data that no longer matches the params`, bad);
    }
    next();
  });
  return router;
}

export interface Boards {
  /** Mount at BOARD_PATH after `authenticate`: picks the admin or the read-only board by `req.role`. */
  router: RequestHandler;
}

export function createBoards(queues: Queues, bodyLimit: string): Boards {
  const build = (readOnly: boolean): RequestHandler => {
    const serverAdapter = new ExpressAdapter().setBasePath(BOARD_PATH);
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
    return serverAdapter.getRouter() as RequestHandler;
  };
  const admin = build(false);
  const viewer = build(true);
  const checks = guard(queues);
  const json = express.json({ limit: bodyLimit });
  return {
    router: (req, res, next) => {
      if (req.role !== 'admin') return viewer(req, res, next);
      json(req, res, (err?: unknown) => {
        if (err) return next(err);
        checks(req, res, (err2?: unknown) => (err2 ? next(err2) : admin(req, res, next)));
      });
    },
  };
}
