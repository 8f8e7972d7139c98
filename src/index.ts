// The public API: defineJob for job files; createClient (trigger and follow runs from application code) and createWorker
// (host workers inside an existing service) for embedding; createScopes (the run's token scope for background work outside
// runs: message consumers); the types and error classes.
export { defineJob } from './jobs/define.ts';
export {
  createClient,
  type ClientOptions,
  type ClientTriggerOptions,
  type DataOf,
  type FinishedRun,
  type JobscopeClient,
  type ResultOf,
} from './client.ts';
export { createWorker, type EmbeddedWorker, type EmbeddedWorkerStatus, type WorkerOptions } from './runtime/embed.ts';
export type { RedisState } from './redis/connect.ts';
export { createScopes, type ScopeContext, type ScopeSpec, type Scopes, type ScopesOptions } from './scopes.ts';
export {
  consumeWithScope,
  type AmqpChannel,
  type AmqpMessage,
  type ConsumeOptions,
  type OnFailure,
  type ScopedConsumer,
} from './consumers/rabbitmq.ts';
export { scopedProcessor, type ScopedProcessorOptions } from './consumers/bullmq.ts';
export { enableTracing, type Tracing, type TracingOptions } from './trace.ts';
export type { RunView, JobView } from './control/control.ts';
export type { CancelResult, EnqueueResult } from './control/queues.ts';
export type {
  BackoffSpec,
  ExecOptions,
  ExecResult,
  JobContext,
  JobDefinition,
  LiveToken,
  Overlap,
  RunInfo,
  RunReport,
  RunOutcome,
  RunToken,
  Schedule,
  TokenClaims,
  TokenSpec,
  Trigger,
  TriggerOptions,
} from './interfaces.ts';
export * from './errors.ts';
export { ServiceRefusedError } from './http/clients.ts';
