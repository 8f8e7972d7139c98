// The worker registry, written: every worker process says who it is and that it is alive, every few seconds, in one Redis
// hash (`<prefix>:workers`); control/fleet.ts reads it.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../run/redis-keys.ts';
import { HEARTBEAT_MS, type WorkerBeat } from '../control/fleet.ts';

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
