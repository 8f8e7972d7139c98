// Every Redis key of jobscope's own in one place (as BullMQ's QueueKeys does for a queue), plus the few BullMQ keys our
// scripts read. The verifier (packages/verify/src/liveness.ts) spells `<prefix>:token:<jti>` itself: it is a package of its own.

export class RedisKeys {
  readonly prefix: string;
  constructor(prefix: string) {
    this.prefix = prefix;
  }

  /** A live token: `SET ... PX` until its exp, `DEL` to revoke. The value is metadata, never the token. */
  token(jti: string): string {
    return `${this.prefix}:token:${jti}`;
  }
  /**
   * Sorted set of the jtis of registered tokens (score: expiry, epoch ms): what GET /api/tokens reads instead of scanning
   * the keyspace. Only an index: `token(jti)` stays the truth of liveness (a member whose key is gone is not live).
   */
  get tokenIndex(): string {
    return `${this.prefix}:_tokens`;
  }
  /** What `token(jti)` starts with (scripts build token keys from a jti). */
  get tokenPrefix(): string {
    return `${this.prefix}:token:`;
  }
  /** Sorted set of the public keys still published at /.well-known/jwks.json (token/jwks.ts). */
  get jwks(): string {
    return `${this.prefix}:jwks`;
  }
  /** A run's BullMQ hash from its run id (`<job>:<bullmq id>`). */
  run(runId: string): string {
    return `${this.prefix}:${runId}`;
  }
  // The run index (control/runs.ts) under `_idx`: a job name cannot start with '_', so no queue's keys can meet these.
  /** Zset of a job's finished runs (in one state) with one attribute value: member = BullMQ id, score = finishedOn. */
  runIndex(job: string, state: 'completed' | 'failed', attr: string, value: string): string {
    return `${this.prefix}:_idx:${job}:${state}:${attr}:${value}`;
  }
  /** Set of the index keys that exist for a job and state (so they can be trimmed with BullMQ's set). */
  runIndexKeys(job: string, state: 'completed' | 'failed'): string {
    return `${this.prefix}:_idx:${job}:${state}`;
  }
  /** Hash `<job>:<state>` -> how far the index has read BullMQ's finished set (its finishedOn, ms). */
  get runIndexMarks(): string {
    return `${this.prefix}:_idx`;
  }
  /** Set of paused job names: pause covers queue and schedule, on every host, across restarts. */
  get paused(): string {
    return `${this.prefix}:paused`;
  }
  /** Hash job name -> the phase (ms offset) of its `every` schedule, kept while it is paused. */
  get phase(): string {
    return `${this.prefix}:phase`;
  }
  /** Hash job name -> its definition without code (JSON), as the runners serving it published it: what a client that has no
   * jobs folder validates and enqueues with. */
  get registry(): string {
    return `${this.prefix}:registry`;
  }
  /** The project (package name) whose runners own this prefix: another project's runners refuse to start on it. */
  get project(): string {
    return `${this.prefix}:project`;
  }
  /** Hash job name -> the project whose runner created its schedule: sync removes only its own project's schedules. */
  get scheduleOwners(): string {
    return `${this.prefix}:schedule-owner`;
  }
  /** Hash worker id -> its heartbeat (host, pid, versions, groups, jobs, active runs, startedAt, lastSeen). */
  get workers(): string {
    return `${this.prefix}:workers`;
  }
  /** Hash job name -> the outcome of its last finished run (to tell a recovery). */
  get lastOutcome(): string {
    return `${this.prefix}:last-outcome`;
  }
  /** Set of every job name that has had a queue, so schedulers of deleted job files can be found. */
  get knownJobs(): string {
    return `${this.prefix}:jobs`;
  }
  get schedulerSyncLock(): string {
    return `${this.prefix}:lock:scheduler-sync`;
  }
  /** Pub/sub channel: cancel a run on whichever host runs it. */
  get cancelChannel(): string {
    return `${this.prefix}:cancel`;
  }
  /**
   * Set of the jobs that may have an active run (added when a process starts one, removed by a stalled check that finds the
   * job's active list empty): the queues every process checks for stalled runs each interval (runtime/dispatch.ts).
   */
  get busyJobs(): string {
    return `${this.prefix}:_busy`;
  }
  /** Sorted set a process's dispatcher waits on beside the job markers: a member added here wakes its wait (never kept). */
  dispatchWake(processId: string): string {
    return `${this.prefix}:_wake:${processId}`;
  }
  /** The Redis client name (not a key) of a worker process's one blocking connection: GET /api/workers/connections finds it. */
  dispatchConnection(processId: string): string {
    return `${this.prefix}:dispatch:${processId}`;
  }
  /** Sorted set (score: reservation order, Redis time in µs) of a job's runs that count for overlap 'skip'/'replace' until they finish. */
  overlap(job: string): string {
    return `${this.prefix}:overlap:${job}`;
  }

  // BullMQ's keys (its layout: `<prefix>:<queue>:<suffix>`), read by our scripts and the run history.
  /** What every queue's keys start with (scripts add `<job>:<suffix>`). */
  get queues(): string {
    return `${this.prefix}:`;
  }
  /** What every key of a queue starts with. */
  queue(job: string): string {
    return `${this.prefix}:${job}:`;
  }
  /** A job's finished runs of one end (a sorted set, score: finishedOn). */
  finished(job: string, state: 'completed' | 'failed'): string {
    return `${this.queue(job)}${state}`;
  }
  /** Where BullMQ keeps a job's runs in an unfinished state (a list or a sorted set; see UNFINISHED_PLACES). */
  unfinished(job: string, place: (typeof UNFINISHED_PLACES)[number]['suffix']): string {
    return `${this.queue(job)}${place}`;
  }
  /** A job's event stream (QueueEvents reads it). */
  events(job: string): string {
    return `${this.queue(job)}events`;
  }
  /** A run's BullMQ hash; jobscope keeps a few fields of its own in it (they die with the run). */
  bullJob(job: string, id: string): string {
    return `${this.prefix}:${job}:${id}`;
  }
  /** The lock BullMQ gives the one worker executing a run (value: that execution's lock token). */
  bullLock(job: string, id: string): string {
    return `${this.prefix}:${job}:${id}:lock`;
  }
}

/** Unfinished states and the BullMQ key suffixes their runs are kept under. */
export const UNFINISHED_PLACES = [
  { state: 'active', suffix: 'active' },
  { state: 'waiting', suffix: 'wait' },
  { state: 'waiting', suffix: 'paused' },
  { state: 'prioritized', suffix: 'prioritized' },
  { state: 'delayed', suffix: 'delayed' },
  { state: 'waiting-children', suffix: 'waiting-children' },
] as const;

/** Fields jobscope adds to a run's BullMQ hash. */
export const RUN_FIELDS = {
  /** Set when a run's trigger differs from the BullMQ job name it was created with ('misfire'). */
  trigger: 'jsTrigger',
  /** JSON list of the run ids this run started (ctx.trigger, then, shards). */
  children: 'jsChildren',
  /** The claims of every token the run was given: JSON lines, oldest first (the Run page; revoking a run's tokens). */
  claims: 'jsClaims',
  /** Attempts that did not complete, one JSON line each: { a, start, end, outcome } (the Run page's attempt rows). */
  attempts: 'jsAttempts',
  /** One `<ms>,<attempt>` line per log line, in step with the run's BullMQ log list (the Run page's log times). */
  logMeta: 'jsLogMeta',
  /**
   * How a run that did not complete ended, written by the worker when it records the failure: 'failed', 'timeout',
   * 'cancelled', 'not-started'... (RunOutcome). The read model takes a failed run's outcome from here, never from its error.
   */
  outcome: 'jsOutcome',
} as const;

/** What jobscope keeps in a run's BullMQ options (`opts.jobscope`): who triggered it and where it belongs. */
export interface RunMeta {
  /** 'user:<login>', 'cli:<os user>', 'client[:<name>]', 'run:<parent run id>'; absent for a scheduled fire. */
  by?: string;
  /** Who last pressed Retry on the failed run ('user:<login>'): the attempts from then on act for them (`act`). */
  retriedBy?: string;
  /** The run that started this one (ctx.trigger, then, a shard's parent). */
  parent?: string;
  /** A shard run's place in its broadcast. */
  shard?: { index: number; total: number };
  /** W3C traceparent of the trigger's span, when tracing was on: the run continues that trace. */
  traceparent?: string;
}
