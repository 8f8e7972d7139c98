// A consumer of the application's own BullMQ queue (not a jobscope job) whose every job is handled inside its own token
// scope: `scopedProcessor` wraps a processor so that each attempt runs in `scopes.run(...)`, the tokens minted before it
// and revoked before BullMQ records the attempt as completed or failed (the processor's promise settles only after the
// revocation). BullMQ's own retries, backoff and cancel (`worker.cancelJob`: the scope's ctx.signal) apply unchanged.
import type { Job } from 'bullmq';
import type { ScopeContext, ScopeSpec, Scopes } from '../scopes.ts';

export interface ScopedProcessorOptions<D> extends Omit<ScopeSpec, 'id' | 'act' | 'signal' | 'traceparent'> {
  /** The token's `id` claim: default `<queue>:<job id>`. */
  id?(job: Job<D>): string | undefined;
  /** The actor (`act`) of a job, if its data says who asked for it. */
  act?(job: Job<D>): ScopeSpec['act'];
}

/**
 *   new Worker('emails', scopedProcessor(scopes, { subject: 'consumer:emails', audience: ['mailer'] }, async (job, ctx) => {
 *     await ctx.service('mailer').post('send', { json: job.data });
 *   }), { connection });
 */
export function scopedProcessor<D = unknown, R = unknown>(
  scopes: Scopes,
  options: ScopedProcessorOptions<D>,
  processor: (job: Job<D>, ctx: ScopeContext) => Promise<R> | R,
): (job: Job<D>, token?: string, signal?: AbortSignal) => Promise<R> {
  const { id, act, ...spec } = options;
  // Three declared parameters: BullMQ only creates the cancel signal for a processor that takes it.
  return (job: Job<D>, _token?: string, signal?: AbortSignal) => {
    const carried = (job.data as { traceparent?: unknown } | undefined)?.traceparent;
    return scopes.run(
      {
        ...spec,
        id: id ? id(job) : `${job.queueName}:${job.id}`,
        act: act?.(job),
        signal,
        traceparent: typeof carried === 'string' ? carried : undefined,
      },
      (ctx) => processor(job, ctx),
    );
  };
}
