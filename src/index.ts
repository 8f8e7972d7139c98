// The public API for job files and embedding: defineJob and the types. Runtime pieces are exported for embedding and tests.
export { defineJob } from './jobs/define.ts';
export type {
  BackoffSpec,
  JobContext,
  JobDefinition,
  LiveToken,
  Overlap,
  RunInfo,
  RunReport,
  RunToken,
  Schedule,
  TokenClaims,
  TokenSpec,
  Trigger,
} from './interfaces.ts';
export * from './errors.ts';
