// One run execution's tokens: minted before the handler starts, re-minted before expiry while the run lasts, the replaced
// token revoked a moment later, and everything revoked at close. Owned by one attempt; nothing else mints for it.
import type { Logger } from '../log.ts';
import { LockLostError } from '../errors.ts';
import type { MintedToken, MintRequest, TokenMinter } from './mint.ts';
import type { ExecutionLock } from './store.ts';

export interface LeaseHooks {
  /** A token became live (first or re-minted). */
  minted?(token: MintedToken): void;
  revoked?(jti: string): void;
  /** The current token changed (re-mint): the run's scope must send the new one from now on. */
  renewed?(token: MintedToken): void;
  /** A re-mint was refused because the execution lost its run's lock. */
  lost?(err: LockLostError): void;
}

/** When to re-mint: `margin` before the token's exp (a fifth of its lifetime, at most a minute). */
export function remintMarginMs(lifetimeMs: number): number {
  return Math.min(60_000, lifetimeMs / 5);
}

export class RunTokenLease {
  private readonly minter: TokenMinter;
  private readonly request: MintRequest;
  private readonly lock: Omit<ExecutionLock, 'first'> | undefined;
  private readonly log: Logger;
  private readonly hooks: LeaseHooks;
  private readonly live = new Set<string>();
  /** Every raw token this lease handed out, for redaction of what the handler logs or returns. */
  readonly raws: string[] = [];
  current: MintedToken | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(minter: TokenMinter, request: MintRequest, log: Logger, hooks: LeaseHooks = {}, lock?: Omit<ExecutionLock, 'first'>) {
    this.minter = minter;
    this.request = request;
    this.lock = lock;
    this.log = log;
    this.hooks = hooks;
  }

  get open(): boolean {
    return !this.closed;
  }

  /** Mints the execution's first token (revoking every earlier token of the run) and starts the re-mint timer. */
  async start(): Promise<MintedToken> {
    const token = this.track(await this.minter.mint(this.request, this.lock && { ...this.lock, first: true }));
    if (this.closed) {
      await this.revoke(token.claims.jti);
      throw new LockLostError(this.request.run);
    }
    this.current = token;
    this.schedule();
    return token;
  }

  private track(token: MintedToken): MintedToken {
    this.raws.push(token.raw);
    this.live.add(token.claims.jti);
    this.hooks.minted?.(token);
    return token;
  }

  private async revoke(jti: string): Promise<void> {
    if (!this.live.delete(jti)) return;
    await this.minter.revoke(jti);
    this.hooks.revoked?.(jti);
  }

  /**
   * Re-mint before expiry when a run outlives its token (no timeout, or one longer than the lifetime cap). Timed from the
   * token's actual exp: exp is floored to whole seconds, so it can come up to 1 s before mint time + lifetime.
   */
  private schedule(retryInMs?: number): void {
    const margin = remintMarginMs(this.request.lifetimeMs);
    const remaining = this.current ? this.current.claims.exp * 1000 - Date.now() : this.request.lifetimeMs;
    this.timer = setTimeout(() => void this.remint(), retryInMs ?? Math.max(100, remaining - margin));
    this.timer.unref();
  }

  private async remint(): Promise<void> {
    let next: MintedToken;
    try {
      next = this.track(await this.minter.mint(this.request, this.lock && { ...this.lock, first: false }));
    } catch (err) {
      if (err instanceof LockLostError) return void this.hooks.lost?.(err);
      this.log.error({ err: (err as Error).message }, 'could not re-mint the run token; retrying');
      // Try again while the current token still has time left, rather than let the run run out of it.
      if (!this.closed) this.schedule(1000);
      return;
    }
    if (this.closed) return void (await this.revoke(next.claims.jti).catch(() => undefined));
    const old = this.current!;
    this.current = next;
    this.hooks.renewed?.(next);
    // Requests sent with the old token a moment ago may still be in verification downstream: revoke it shortly after
    // (it has margin left; no new request carries it). close() revokes it at once if the run ends first.
    const oldJti = old.claims.jti;
    setTimeout(
      () => void this.revoke(oldJti).catch((err: Error) => this.log.error({ err: err.message }, 'could not revoke a re-minted token')),
      Math.min(5000, remintMarginMs(this.request.lifetimeMs) / 2),
    ).unref();
    this.log.info({ jti: next.claims.jti }, 'token re-minted for a long run');
    this.schedule();
  }

  /** Revokes every token this lease holds; idempotent. The handler's calls fail from here on. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await Promise.all([...this.live].map((jti) => this.revoke(jti)));
  }
}
