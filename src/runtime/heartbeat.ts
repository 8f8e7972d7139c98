// The executor registry: every worker process says who it is and that it is alive, every few seconds, in one Redis hash
// (`<prefix>:workers`). The Workers page, GET /api/workers, `jobscope workers` and `shards: 'workers'` read it.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../keys.ts';

export const HEARTBEAT_MS = 5000;
/** A worker not heard from for this long is dead (three missed beats). */
export const WORKER_DEAD_AFTER_MS = 3 * HEARTBEAT_MS;
/** Dead workers stay listed this long, so an operator sees what went away. */
export const DEAD_WORKER_KEPT_MS = 24 * 3600 * 1000;

export interface WorkerBeat {
  id: string;
  host: string;
  pid: number;
  versions: { jobscope: string; node: string };
  groups: string[];
  jobs: string[];
  /** Run ids active in this process now. */
  active: string[];
  startedAt: string;
  lastSeen: string;
}

export interface WorkerStatus extends WorkerBeat {
  alive: boolean;
}

function jobscopeVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** A worker process's id in the registry (also in the name of its dispatcher's Redis connection). */
export function workerProcessId(): string {
  return `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

export class Heartbeat {
  readonly id: string;
  private readonly redis: Redis;
  private readonly keys: RedisKeys;
  private readonly beat: Omit<WorkerBeat, 'active' | 'lastSeen' | 'jobs'>;
  private readonly active: () => string[];
  private readonly jobs: () => string[];
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  /** `jobs` and `active` are read at every beat (a reload changes the jobs). */
  constructor(redis: Redis, keys: RedisKeys, info: { id: string; jobs: () => string[]; groups: string[] }, active: () => string[]) {
    this.id = info.id;
    this.redis = redis;
    this.keys = keys;
    this.active = active;
    this.jobs = info.jobs;
    this.beat = {
      id: this.id,
      host: os.hostname(),
      pid: process.pid,
      versions: { jobscope: jobscopeVersion(), node: process.version },
      groups: info.groups,
      startedAt: new Date().toISOString(),
    };
  }

  async start(): Promise<void> {
    await this.send();
    // One beat at a time: while Redis is unreachable a beat waits in the connection's queue, and the next waits for it.
    const tick = () => {
      if (this.stopped) return;
      this.timer = setTimeout(() => void this.send().finally(tick), HEARTBEAT_MS);
      this.timer.unref();
    };
    tick();
  }

  private async send(): Promise<void> {
    const beat: WorkerBeat = { ...this.beat, jobs: this.jobs(), active: this.active(), lastSeen: new Date().toISOString() };
    await this.redis.hset(this.keys.workers, this.id, JSON.stringify(beat)).catch(() => undefined);
  }

  /**
   * A clean stop: gone from the registry at once (a crash leaves a beat that ages into "dead"). With `force` (Redis lost)
   * nothing is sent: the entry ages into "dead" as a crashed worker's does.
   */
  async stop(opts: { force?: boolean } = {}): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!opts.force) await this.redis.hdel(this.keys.workers, this.id).catch(() => undefined);
  }
}

/** Every worker heard from in the last day, alive or dead; long-dead entries are removed as they are read. */
export async function listWorkers(redis: Redis, keys: RedisKeys, nowMs = Date.now()): Promise<WorkerStatus[]> {
  const all = await redis.hgetall(keys.workers);
  const out: WorkerStatus[] = [];
  const gone: string[] = [];
  for (const [id, json] of Object.entries(all)) {
    try {
      const beat = JSON.parse(json) as WorkerBeat;
      const age = nowMs - Date.parse(beat.lastSeen);
      if (age > DEAD_WORKER_KEPT_MS) gone.push(id);
      else out.push({ ...beat, alive: age <= WORKER_DEAD_AFTER_MS });
    } catch {
      gone.push(id);
    }
  }
  if (gone.length) await redis.hdel(keys.workers, ...gone);
  return out.sort((a, b) => Number(b.alive) - Number(a.alive) || a.host.localeCompare(b.host) || a.pid - b.pid);
}
