// The registry as runners publish it in Redis: each job's definition without its code. A client in application code that
// has no jobs folder (createClient) validates data and enqueues with exactly the options the runners use.
import type { Redis } from 'ioredis';
import type { JobDefinition, RegisteredJob } from '../interfaces.ts';
import type { RedisKeys } from '../run/redis-keys.ts';
import { registerDefinition } from './define.ts';
import { Registry } from './registry.ts';

/** A definition's data: every field but functions (the handler, later data mappings). */
export function specOf(job: RegisteredJob): Record<string, unknown> {
  return JSON.parse(JSON.stringify(job.definition, (_k, v: unknown) => (typeof v === 'function' ? undefined : v))) as Record<
    string,
    unknown
  >;
}

/**
 * Publishes this registry's jobs. With `authoritative` (a process that owns the schedules: start, server), jobs no longer
 * in it are removed; a worker serving only some jobs adds its own.
 */
export async function publishRegistry(redis: Redis, keys: RedisKeys, registry: Registry, authoritative: boolean): Promise<void> {
  const entries = registry.names.flatMap((name) => [name, JSON.stringify(specOf(registry.get(name)))]);
  if (entries.length) await redis.hset(keys.registry, ...entries);
  if (authoritative) {
    const stale = (await redis.hkeys(keys.registry)).filter((name) => !registry.has(name));
    if (stale.length) await redis.hdel(keys.registry, ...stale);
  }
}

function notHere(): never {
  throw new Error('this job is defined by the runners, not in this process: it cannot run here');
}

/** The registry the runners published; definitions that no longer validate are left out. */
export async function publishedRegistry(redis: Redis, keys: RedisKeys): Promise<Registry> {
  const all = await redis.hgetall(keys.registry);
  const jobs: RegisteredJob[] = [];
  for (const [name, json] of Object.entries(all)) {
    try {
      jobs.push(
        registerDefinition(name, `(published by a runner in ${keys.registry})`, { ...(JSON.parse(json) as JobDefinition), run: notHere }),
      );
    } catch {
      // Written by a newer or older runner whose definition this version cannot read: not offered.
    }
  }
  return new Registry(jobs);
}
