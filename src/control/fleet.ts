// The worker registry, read: every worker process heard from in the last day (`<prefix>:workers`, written by each process's
// runtime/heartbeat.ts). The Workers page, GET /api/workers, `jobscope workers` and `shards: 'workers'` read it.
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../run/redis-keys.ts';

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
