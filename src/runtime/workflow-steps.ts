// The runs a run starts besides those its handler starts with ctx.trigger: the jobs of `then` after a success, and the shard
// runs of a sharded job (jobs/workflow.ts checks `then` across files at start-up).
import { UnrecoverableError } from 'bullmq';
import type { Control } from '../control/control.ts';
import { jobOptions, type Queues } from '../control/queues.ts';
import { runIdOf } from '../run/model.ts';
import type { RunMeta } from '../run/redis-keys.ts';
import type { Attempt, Ending } from './attempt.ts';

/** Starts the jobs of `then` after a success. A step whose data does not fit its job is logged on this run, not started. */
export async function startThen(attempt: Attempt, result: unknown, control: Control): Promise<void> {
  const { job, run, record, log } = attempt;
  for (const [i, step] of job.then.entries()) {
    let data: unknown;
    try {
      data = step.data ? step.data(result, run) : (result ?? {});
    } catch (err) {
      await record.log(`then: ${step.job} not started: its data mapping threw: ${(err as Error).message}`);
      continue;
    }
    try {
      // The key makes a repeated completion (a lost lock, a crash after the handler) start each child once.
      const { runId } = await control.trigger(step.job, data, {
        trigger: 'parent',
        by: `run:${run.id}`,
        parent: run.id,
        key: `then:${run.id}:${i}`,
      });
      await record.log(`then: started ${runId}`);
    } catch (err) {
      await record.log(`then: ${step.job} not started: ${(err as Error).message}`);
      log.warn({ child: step.job, err: (err as Error).message }, 'then: child not started');
    }
  }
}

/** A shard run's BullMQ id: derived from its parent's, so fanning out twice adds nothing (ids cannot contain ':'). */
function shardId(parentId: string, index: number): string {
  return `${parentId.replace(/:/g, '_')}-shard-${index}`;
}

/**
 * A run of a sharded job: fans out one shard run per index as BullMQ children of this run, waits for them (without
 * holding a slot), then completes with their results in index order, or fails naming the shards that failed. Each
 * shard is a run of its own: its own token, its own retries. Called again when the shards are done (BullMQ moves the run
 * back from waiting-children): it then reads their results.
 */
export async function fanOut(attempt: Attempt, lock: string | undefined, parts: { queues: Queues; control: Control }): Promise<Ending> {
  const { job, bullJob, run, record, log } = attempt;
  const { queues, control } = parts;
  const deps = await bullJob.getDependenciesCount();
  if (Object.values(deps).every((n) => !n)) {
    const total = job.shards === 'workers' ? await control.workersServing(job.name) : job.shards!;
    if (total < 1) return failed(attempt, `shards: 'workers': no live worker serves ${job.name}`);
    const parent = { id: bullJob.id!, queue: bullJob.queueQualifiedName };
    const shards = Array.from({ length: total }, (_, index) => ({
      name: 'shard',
      data: bullJob.data as unknown,
      opts: {
        ...jobOptions(job),
        jobId: shardId(bullJob.id!, index),
        parent,
        // A failed shard does not stop the others; this run then fails naming it.
        ignoreDependencyOnFailure: true,
        jobscope: { by: `run:${run.id}`, parent: run.id, shard: { index, total } } satisfies RunMeta,
      },
    }));
    await queues.queue(job.name).addBulk(shards);
    for (const shard of shards) await queues.addChild(run.id, runIdOf(job.name, shard.opts.jobId));
    await record.log(`broadcast: ${total} shard run(s)`);
    log.info({ shards: total }, 'broadcast: shard runs started');
    if (lock && (await bullJob.moveToWaitingChildren(lock))) return { kind: 'waiting-for-shards' };
  }
  const indexOf = (key: string) => Number(/-shard-(\d+)$/.exec(key)?.[1] ?? -1);
  const [values, failures] = await Promise.all([bullJob.getChildrenValues(), bullJob.getIgnoredChildrenFailures()]);
  const failedShards = Object.entries(failures).map(([key, reason]) => ({ index: indexOf(key), reason }));
  if (failedShards.length) {
    failedShards.sort((a, b) => a.index - b.index);
    return failed(
      attempt,
      `shard(s) ${failedShards.map((f) => f.index).join(', ')} failed: ${failedShards.map((f) => `#${f.index} ${f.reason}`).join('; ')}`,
    );
  }
  const results: unknown[] = [];
  for (const [key, value] of Object.entries(values)) results[indexOf(key)] = value;
  attempt.end('completed', true);
  return { kind: 'completed', result: results };
}

/** The sharded run fails for good. */
function failed(attempt: Attempt, message: string): Ending {
  attempt.end('failed', true, message);
  return { kind: 'failed', outcome: 'failed', error: new UnrecoverableError(message) };
}
