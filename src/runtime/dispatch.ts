// The dispatcher: a worker process takes work for every job it serves over a fixed number of Redis connections, whatever
// the number of jobs. BullMQ's own Worker loop holds one blocking connection per queue (1,004 connections for 1,000 jobs)
// and wakes every queue every few seconds (200 commands/s idle at 1,000 jobs). Here each job's BullMQ Worker is built
// without a blocking connection and never runs its own loop (a `QueueTaker`); the process waits for all its queues in ONE
// BZPOPMIN over their markers (BullMQ's wake-up keys: a member is added when a run is added, promoted or taken, scored
// with the time a delayed run is due), then takes runs with BullMQ's moveToActive and processes them with BullMQ's
// processJob. Locks, completion, retries, events, metrics and job schedulers stay BullMQ's.
//
// Stalled runs: BullMQ checks every queue every interval. Here a job is put in a set of busy jobs (`RedisKeys.busyJobs`)
// when a process starts one of its runs, and every process checks only those queues each interval, so a crashed
// worker's run goes back to the queue within the lock duration plus one interval, whatever the estate.
//
// The backstop, every SWEEP_MS, is one script over every queue served here: a job with an active run missing from the
// busy set (its process died between taking the run and marking the job) is put back in it, and a job with runs to take
// that nobody takes (its marker was popped by a process that froze or died: a frozen process's wait still holds its
// connection, so Redis hands it markers; or the process holding a delayed run's wake-up died) gets its marker back.
import { createRedisBackend, Worker, type Job, type JobJson, type Processor, type WorkerOptions } from 'bullmq';
import { Command, type Redis } from 'ioredis';
import type { RedisKeys } from '../run/redis-keys.ts';
import { scripts } from '../run/scripts.ts';

/** The longest one wait blocks (BullMQ's cap on Redis: a longer BZPOPMIN risks hanging over a reconnect). */
const WAIT_S = 10;
/** How often the backstop sweep looks at every queue (one script call for all of them). */
const SWEEP_MS = 10_000;
/** A delayed run this late is overdue: the process holding its wake-up is gone (a live one takes it within a few ms). */
const OVERDUE_MS = 2000;
/** After a Redis error in the wait or a fetch, try again after this long. */
const RETRY_MS = 1000;

/**
 * The taker of one job's queue: a BullMQ Worker that the process's Dispatcher drives (no blocking connection of its own, no
 * loop of its own). It takes runs, keeps their locks and processes them with the run executor's attempt() (executor.ts).
 */
export class QueueTaker extends Worker {
  constructor(name: string, processor: Processor, opts: WorkerOptions) {
    super(name, processor, { ...opts, autorun: false, skipStalledCheck: true }, (queue, options, flags) =>
      createRedisBackend(queue, options, { ...flags, withBlockingConnection: false }),
    );
  }

  /** What the dispatcher does when this taker is resumed (it takes runs again). */
  onResume: () => void = () => {};

  /** BullMQ's resume() starts its loop through run(): that loop would block the shared connection, so it never starts. */
  override async run(): Promise<void> {}

  override async resume(): Promise<void> {
    await super.resume();
    this.onResume();
  }

  /** Lock renewal for the runs this taker processes (BullMQ's LockManager, started by its loop otherwise). */
  startLocks(): void {
    this.lockManager.start();
  }

  /** Takes the next run (BullMQ's moveToActive), or says when to look again (a delayed run is due, a rate limit ends). */
  async take(token: string): Promise<{ job?: Job; retryAt: number }> {
    const [data, id, limitDelay, delayUntil] = (await this.getBackend().moveToActive(token, this.opts.name)) as [
      JobJson | undefined,
      string,
      number,
      number,
    ];
    const job = await this.nextJobFromJobData(data, id, token);
    const retryAt = Number(limitDelay) > 0 ? Date.now() + Number(limitDelay) : Number(delayUntil) || 0;
    return { job: job ?? undefined, retryAt };
  }

  /** BullMQ's stalled-run check of this queue (throttled fleet-wide by BullMQ to once per stalledInterval): the runs put back. */
  async checkStalled(): Promise<string[]> {
    const stalled = await this.getBackend().moveStalledJobsToWait();
    for (const id of stalled) this.emit('stalled', id, 'active');
    return stalled;
  }
}

/**
 * The wait's BZPOPMIN, sent as bytes encoded once per key list: ioredis builds a command by flattening its arguments, 0.28 ms
 * of the process's time for 1,000 keys, paid on every wait (two or three per run) before this. Only on a single server or
 * Sentinel: a Cluster client routes a command by the keys in its arguments.
 */
class Wait extends Command {
  private readonly wire: Buffer;
  constructor(wire: Buffer) {
    super('bzpopmin', [], { replyEncoding: 'utf8' });
    this.wire = wire;
  }
  override toWritable(): Buffer {
    return this.wire;
  }
}

/** A command in Redis's protocol (RESP), as bytes (a string written to a socket is encoded again at every write). */
function encode(args: string[]): Buffer {
  return Buffer.from(`*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`);
}

interface Served {
  name: string;
  taker: QueueTaker;
  marker: string;
  waitKey: string;
  prioritizedKey: string;
  capacity: number;
  /**
   * This process may hold every run the cluster allows at once (concurrency 1, the default): while its slots are full no
   * other process can take a run either, so the job stays in the wait (no new wait per run) and a marker it pops then is
   * kept for when a slot frees (`pending`) instead of being handed back.
   */
  holdsAll: boolean;
  /**
   * Runs were ready while every slot was full: a slot that frees takes them. Until then the job is left out of the wait:
   * each run a full slot takes next (BullMQ's moveToFinished) sets the marker again, which would end the wait once per run.
   */
  pending: boolean;
  active: number;
  /** This process has put the job in the busy set and had a run of it active ever since. */
  marked: boolean;
  taking: boolean;
  again: boolean;
  retiring: boolean;
  /** When this process looks again by itself (a delayed run due, a rate limit over). */
  timer?: NodeJS.Timeout;
  timerAt: number;
  /** Settles when the job's last run here has ended (for retiring). */
  idle?: () => void;
}

export interface DispatcherDeps {
  /** This process in the executor registry: its connection is named `RedisKeys.dispatchConnection(processId)`. */
  processId: string;
  /** The shared connection the BullMQ workers use. */
  connection: Redis;
  keys: RedisKeys;
  /** How often the busy queues are checked for stalled runs. */
  stalledIntervalMs: number;
  onError: (err: Error, context: Record<string, unknown>) => void;
}

export class Dispatcher {
  private readonly deps: DispatcherDeps;
  private readonly served = new Map<string, Served>();
  private readonly byMarker = new Map<string, Served>();
  private readonly running = new Set<Promise<void>>();
  /** The one blocking connection of this process. */
  private readonly blocking: Redis;
  private readonly wakeKey: string;
  private waitingOn: Set<string> | null = null;
  /** The wait's keys and their encoding, until what can be taken here changes (`changed()`). */
  private wait: { keys: Set<string>; wire: Buffer; args: string[] } | null = null;
  private wakeIdle: (() => void) | null = null;
  /** Ends the pause after a failed wait early (close() calls it: it need not wait out RETRY_MS). */
  private wakeRetry: (() => void) | null = null;
  /** A wake-up is on its way to the wait: the wait rebuilds its keys after it anyway, so one is enough. */
  private wakeSent = false;
  private closed = false;
  private loop: Promise<void> | undefined;
  private stalledTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private tokens = 0;

  constructor(deps: DispatcherDeps) {
    this.deps = deps;
    this.wakeKey = deps.keys.dispatchWake(deps.processId);
    this.blocking = deps.connection.duplicate({ connectionName: deps.keys.dispatchConnection(deps.processId) });
    this.blocking.on('error', (err: Error) => deps.onError(err, { connection: 'dispatch' }));
    scripts(deps.connection);
  }

  /**
   * Takes runs of `name` with `taker`, at most `capacity` at once in this process; `concurrency` is the job's limit in the
   * whole cluster.
   */
  serve(name: string, taker: QueueTaker, capacity: number, concurrency: number): void {
    const served: Served = {
      name,
      taker,
      marker: taker.keys.marker,
      waitKey: taker.keys.wait,
      prioritizedKey: taker.keys.prioritized,
      capacity,
      holdsAll: capacity >= concurrency,
      pending: false,
      active: 0,
      marked: false,
      taking: false,
      again: false,
      retiring: false,
      timerAt: 0,
    };
    taker.startLocks();
    taker.onResume = () => this.open(served);
    this.served.set(name, served);
    this.byMarker.set(served.marker, served);
    this.open(served);
  }

  /**
   * `s` takes runs (again: a resume): looks now rather than at the marker (runs may be waiting already, their marker taken
   * by another process), and makes the wait include it.
   */
  private open(s: Served): void {
    s.pending = false;
    void this.take(s);
    this.changed();
    if (this.loop) this.refresh(s);
    else this.start();
  }

  /** Takes no new run of this taker's job; resolves when its runs here have ended. */
  retire(taker: QueueTaker): Promise<void> {
    const served = this.byMarker.get(taker.keys.marker);
    if (!served || served.taker !== taker) return Promise.resolve();
    served.retiring = true;
    this.changed();
    this.handBackTimer(served);
    if (this.served.get(served.name) === served) this.served.delete(served.name);
    if (this.byMarker.get(served.marker) === served) this.byMarker.delete(served.marker);
    if (served.active === 0) return Promise.resolve();
    return new Promise((resolve) => (served.idle = resolve));
  }

  /** Stops waiting and taking; resolves when the runs in progress here have ended (the caller aborts them at its deadline). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.stalledTimer);
    clearInterval(this.sweepTimer);
    for (const served of this.served.values()) this.handBackTimer(served);
    this.wakeIdle?.();
    this.wakeRetry?.();
    await Promise.allSettled([...this.running]);
    // Ends the wait (it holds no run).
    this.blocking.disconnect();
    await this.loop?.catch(() => undefined);
  }

  private start(): void {
    this.loop = this.waitLoop();
    this.stalledTimer = setInterval(() => void this.checkBusy(), this.deps.stalledIntervalMs);
    this.sweepTimer = setInterval(() => void this.sweep(), SWEEP_MS);
    this.stalledTimer.unref();
    this.sweepTimer.unref();
  }

  private canTake(s: Served): boolean {
    return this.canWait(s) && s.active < s.capacity;
  }

  /** Is `s` in the wait: it can take a run, or its slots are full but it holds every run the cluster allows. */
  private canWait(s: Served): boolean {
    return !this.closed && !s.retiring && !s.taker.isPaused() && !s.taker.closing && (s.active < s.capacity || (s.holdsAll && !s.pending));
  }

  /** The wait: one BZPOPMIN over the markers of every job with a free slot here, and this process's wake key. */
  private async waitLoop(): Promise<void> {
    while (!this.closed) {
      if (!this.wait) {
        const keys = [...this.served.values()].filter((s) => this.canWait(s)).map((s) => s.marker);
        const args = [this.wakeKey, ...keys, String(WAIT_S)];
        this.wait = { keys: new Set(keys), wire: encode(['bzpopmin', ...args]), args };
      }
      const wait = this.wait;
      if (wait.keys.size === 0) {
        await new Promise<void>((resolve) => (this.wakeIdle = resolve));
        this.wakeIdle = null;
        continue;
      }
      this.waitingOn = wait.keys;
      let popped: [string, string, string] | null;
      try {
        popped = (await (this.blocking.isCluster
          ? this.blocking.call('bzpopmin', ...wait.args)
          : this.blocking.sendCommand(new Wait(wait.wire)))) as [string, string, string] | null;
        if (popped?.[0] === this.wakeKey) this.wakeSent = false;
      } catch (err) {
        if (this.closed) break;
        this.deps.onError(err as Error, { connection: 'dispatch' });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, RETRY_MS);
          this.wakeRetry = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wakeRetry = null;
        continue;
      } finally {
        this.waitingOn = null;
      }
      if (!popped || popped[0] === this.wakeKey) continue;
      const [key, member, score] = popped;
      const s = this.byMarker.get(key);
      if (!s) continue;
      if (!this.canTake(s) && s.holdsAll && this.canWait(s)) {
        s.pending = true;
        this.changed();
        continue;
      }
      if (!this.canTake(s)) {
        // Full (or paused) here since the wait began: the marker is another process's to find.
        this.changed();
        void this.deps.connection.zadd(key, score, member).catch((err: Error) => this.deps.onError(err, { job: s.name }));
        continue;
      }
      const at = Number(score);
      if (at > Date.now()) this.takeAt(s, at);
      // The next wait is sent once the run is taken: it then leaves out a job this took the last free slot of (or its
      // marker, set again by BullMQ's take, would end that wait at once), and Redis sets it up (114 us over 1,000 keys,
      // INFO commandstats) after the take, not before it.
      else await this.take(s);
    }
  }

  /** What can be taken here changed: the next wait is built afresh. */
  private changed(): void {
    this.wait = null;
  }

  /** Makes the wait include `s` again if it is waiting without it (a slot came free, a job was added). */
  private refresh(s: Served): void {
    if (!this.canTake(s)) return;
    if (this.wakeIdle) return this.wakeIdle();
    if (this.waitingOn && !this.waitingOn.has(s.marker)) this.wake();
  }

  private wake(): void {
    if (this.wakeSent) return;
    this.wakeSent = true;
    void this.deps.connection.zadd(this.wakeKey, 0, '1').catch(() => (this.wakeSent = false));
  }

  /** Takes runs of `s` while it has free slots and the queue has runs ready. */
  private async take(s: Served): Promise<void> {
    if (s.taking) {
      s.again = true;
      return;
    }
    s.taking = true;
    let took = 0;
    try {
      do {
        s.again = false;
        while (this.canTake(s)) {
          const token = `${s.taker.id}:${this.tokens++}`;
          const { job, retryAt } = await s.taker.take(token);
          if (!job) {
            if (retryAt) this.takeAt(s, retryAt);
            break;
          }
          took++;
          this.process(s, job, token);
        }
      } while (s.again && this.canTake(s));
      // BullMQ sets the marker again with every run it hands out (for other workers, in case more are ready): with none
      // ready, that marker would only end this process's next wait at once, a wait over every job's key (measured: three
      // waits per run, 1,000 keys each, before this).
      if (took > 0) await scripts(this.deps.connection).clearMarker(s.marker, s.waitKey, s.prioritizedKey);
    } catch (err) {
      this.deps.onError(err as Error, { job: s.name });
      this.takeAt(s, Date.now() + RETRY_MS);
    } finally {
      s.taking = false;
    }
  }

  /** Looks at `s` again at `at` (the earliest wins). */
  private takeAt(s: Served, at: number): void {
    if (s.timer && s.timerAt <= at) return;
    clearTimeout(s.timer);
    s.timerAt = at;
    s.timer = setTimeout(
      () => {
        s.timer = undefined;
        s.timerAt = 0;
        if (this.canTake(s)) void this.take(s);
        // No free slot here: leave the marker for another process.
        else if (!this.closed && !s.retiring) this.handBackMarker(s, 0);
      },
      Math.min(Math.max(0, at - Date.now()), 2 ** 31 - 1),
    );
  }

  /** A wake-up this process will not act on goes back to the queue's marker, for another process to find. */
  private handBackTimer(s: Served): void {
    if (!s.timer) return;
    clearTimeout(s.timer);
    s.timer = undefined;
    this.handBackMarker(s, s.timerAt);
    s.timerAt = 0;
  }

  /** Sets the queue's marker as BullMQ does: member '0' (score 0) for runs ready now, '1' scored with a delayed run's time. */
  private handBackMarker(s: Served, at: number): void {
    void this.deps.connection.zadd(s.marker, at, at > 0 ? '1' : '0').catch((err: Error) => this.deps.onError(err, { job: s.name }));
  }

  /** One slot: processes the run, then (BullMQ's moveToFinished taking the next one) the runs after it while there are. */
  private process(s: Served, first: Job, token: string): void {
    s.active++;
    if (s.active >= s.capacity && !s.holdsAll) this.changed();
    if (!s.marked) {
      s.marked = true;
      void this.deps.connection.sadd(this.deps.keys.busyJobs, s.name).catch((err: Error) => this.deps.onError(err, { job: s.name }));
    }
    // Whether BullMQ looked for a next run when the last one left the slot; when it did not (shutdown, reload, pause, a lost
    // lock), runs held back by the job's concurrency may be waiting: the queue's marker is set for whoever can take them.
    let lookedForNext = false;
    const next = () => (lookedForNext = !this.closed && !s.retiring && !s.taker.isPaused() && !s.taker.closing);
    const slot = (async () => {
      let job: Job | void = first;
      while (job) {
        lookedForNext = false;
        job = await s.taker.processJob(job, job.token ?? token, next);
      }
      if (!lookedForNext) this.handBackMarker(s, 0);
    })()
      .catch((err: Error) => this.deps.onError(err, { job: s.name }))
      .finally(() => {
        this.running.delete(slot);
        if (s.active-- === s.capacity && !s.holdsAll) this.changed();
        if (s.pending && this.canTake(s)) {
          s.pending = false;
          this.changed();
          void this.take(s);
        }
        if (s.active === 0) {
          s.marked = false;
          s.idle?.();
        }
        this.refresh(s);
      });
    this.running.add(slot);
  }

  /** Every stalled interval: the stalled-run check of the busy jobs served here, then the busy set loses the idle ones. */
  private async checkBusy(): Promise<void> {
    try {
      const busy = (await this.deps.connection.smembers(this.deps.keys.busyJobs)).filter((name) => this.served.has(name));
      if (busy.length === 0) return;
      for (const name of busy) {
        const s = this.served.get(name)!;
        // The marker set for a run put back can be taken by a frozen process's wait (its connection is still open): the
        // process that put it back takes it itself when it can.
        if ((await s.taker.checkStalled()).length > 0 && this.canTake(s)) void this.take(s);
      }
      await scripts(this.deps.connection).unmarkIdle(this.deps.keys.busyJobs, this.deps.keys.queues, busy);
    } catch (err) {
      this.deps.onError(err as Error, { check: 'stalled runs' });
    }
  }

  /** The backstop (see the top of this file): one script over every queue served here; overdue runs are taken at once. */
  private async sweep(): Promise<void> {
    const names = [...this.served.keys()];
    if (names.length === 0) return;
    try {
      const overdue = await scripts(this.deps.connection).sweep(
        this.deps.keys.busyJobs,
        this.deps.keys.queues,
        Date.now() - OVERDUE_MS,
        names,
      );
      for (const name of overdue) {
        const s = this.served.get(name);
        if (s && this.canTake(s)) void this.take(s);
      }
    } catch (err) {
      this.deps.onError(err as Error, { check: 'sweep' });
    }
  }
}
