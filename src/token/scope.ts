// The run scope: an AsyncLocalStorage frame per run holding its current token. Every async continuation of the handler
// sees its own run's frame and no other, so concurrent runs in one process never see each other's token.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { RunInfo, TokenClaims } from '../interfaces.ts';
// The span context a run's calls nest under (trace.ts names it TraceParent); a type only: tracing stays off unless enabled.
import type { Context as TraceParent } from '@opentelemetry/api';

export interface ScopeToken {
  raw: string;
  claims: TokenClaims;
}

/** A run's tokens, one per audience (RunTokenLease): current ones, re-mints included. */
export interface RunTokens {
  readonly audiences: string[];
  /** The first audience's token. */
  readonly primary: ScopeToken;
  /** The tokens held now. */
  held(): ScopeToken[];
  /** The current token for `audience`, minted on first use; throws for an audience the job's token does not name. */
  token(audience: string): Promise<ScopeToken>;
}

export interface RunScope {
  run: RunInfo;
  signal: AbortSignal;
  tokens: RunTokens;
  /** False once the run has ended: a continuation that outlives its run must not send a revoked token. */
  open: boolean;
  /** The span its service calls nest under, when tracing is on (trace.ts). */
  trace?: TraceParent;
}

const storage = new AsyncLocalStorage<RunScope>();

export function runInScope<T>(scope: RunScope, fn: () => Promise<T>): Promise<T> {
  return storage.run(scope, fn);
}

export function currentScope(): RunScope | undefined {
  return storage.getStore();
}
