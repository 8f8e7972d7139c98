// The run scope: an AsyncLocalStorage frame per run holding its current token. Every async continuation of the handler
// sees its own run's frame and no other, so concurrent runs in one process never see each other's token.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { RunInfo, TokenClaims } from '../interfaces.ts';

export interface RunScope {
  run: RunInfo;
  signal: AbortSignal;
  /** Replaced when the token is re-minted during a long run. */
  token: { raw: string; claims: TokenClaims };
  /** False once the run has ended: a continuation that outlives its run must not send a revoked token. */
  open: boolean;
}

const storage = new AsyncLocalStorage<RunScope>();

export function runInScope<T>(scope: RunScope, fn: () => Promise<T>): Promise<T> {
  return storage.run(scope, fn);
}

export function currentScope(): RunScope | undefined {
  return storage.getStore();
}

/**
 * Replaces every occurrence of the scope's token(s) in a string, so a handler cannot leak it into logs or results. The
 * signature alone is redacted too: header and claims are not secret (the claims are shown on the dashboard), so with them
 * the signature rebuilds the token.
 */
export function redactTokens(text: string, tokens: Iterable<string>): string {
  let out = text;
  for (const t of tokens) {
    if (!t) continue;
    if (out.includes(t)) out = out.split(t).join('[redacted token]');
    const signature = t.slice(t.lastIndexOf('.') + 1);
    // JSON escaping cannot hide it: a base64url signature has no character JSON would escape.
    if (signature.length >= 16 && out.includes(signature)) out = out.split(signature).join('[redacted token]');
  }
  return out;
}
