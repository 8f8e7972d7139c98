// Project identity on a shared Redis. Queues, schedules and runs are keyed by job name under the prefix, so two projects
// with the default prefix on one Redis would share `hello`'s queue (each running the other's runs) and each schedule sync
// would remove the other's schedules. The runners of a project record its name under the prefix (`<prefix>:project`); a
// runner or CLI of another project refuses to start there and says how to choose a prefix of its own.
import type { Redis } from 'ioredis';
import { ProjectConflictError } from '../errors.ts';
import type { RedisKeys } from '../run/redis-keys.ts';
import { redactUrl } from '../redact.ts';

/** A prefix made from a project name (package names may hold '@' and '/'); in braces when the current one is a hash tag. */
export function prefixFor(project: string, current: string): string {
  const name =
    project
      .replace(/^@/, '')
      .replace(/[^A-Za-z0-9_.-]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'jobscope2';
  return current.startsWith('{') ? `{${name}}` : name;
}

export interface ProjectCheck {
  redis: Redis;
  keys: RedisKeys;
  redisUrl: string;
  project: string;
  /**
   * A runner (start, worker, server) claims an unowned prefix, or one whose owner left no published job; the CLI's
   * one-shot commands only check.
   */
  claim: boolean;
}

function conflict({ keys, redisUrl, project }: ProjectCheck, owner: string, jobs: string[]): ProjectConflictError {
  const shown = jobs.slice(0, 8).join(', ') + (jobs.length > 8 ? `, ... (${jobs.length})` : '');
  return new ProjectConflictError(
    `Redis ${redactUrl(redisUrl)} under the prefix "${keys.prefix}" belongs to another project, "${owner}" (its jobs: ${shown}); ` +
      `this is "${project}" (the name in its package.json).\n` +
      `  Two projects on one Redis need two prefixes: set JOBSCOPE_PREFIX=${prefixFor(project, keys.prefix)} for every process ` +
      `of this project (start, worker, server and the CLI).`,
    owner,
  );
}

/**
 * Refuses (ProjectConflictError) when the prefix belongs to another project that still has jobs published there
 * (`<prefix>:registry`); with `claim`, records this project as the owner when nobody is.
 */
export async function checkProject(check: ProjectCheck): Promise<void> {
  const { redis, keys, project, claim } = check;
  let owner = await redis.get(keys.project);
  if (owner !== null && owner !== project) {
    const jobs = await redis.hkeys(keys.registry);
    if (jobs.length) throw conflict(check, owner, jobs);
    // The other project left no job behind (its registry is empty): the prefix is free again.
    if (claim) await redis.set(keys.project, project);
    return;
  }
  if (owner === null && claim) {
    // NX: of two projects starting at once on an unowned prefix, one wins and the other is refused below.
    await redis.set(keys.project, project, 'NX');
    owner = await redis.get(keys.project);
    if (owner !== project) throw conflict(check, owner ?? '(unknown)', await redis.hkeys(keys.registry));
  }
}
