// One run execution's tokens: one per audience (service) the run calls, each minted on first use (the first audience's at
// the start, which also revokes every earlier token of the run), re-minted before expiry while the run lasts, the replaced
// token revoked a moment later, and all of them revoked at close. Owned by one attempt; nothing else mints for it.
// One audience per token: a token a service received names that service alone, so it cannot be replayed to another.
import { LockLostError, ScopeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { MintedToken, MintRequest, TokenMinter } from './mint.ts';
import type { RunTokens } from './scope.ts';
import type { ExecutionLock } from './store.ts';

/** What a lease logs with (the run's logger). */
export type LeaseLog = Pick<Logger, 'info' | 'error'>;

export interface LeaseHooks {
  /** A token became live (first, first for an audience, or re-minted). */
  minted?(token: MintedToken): void;
  revoked?(jti: string): void;
  /** A mint was refused because the execution lost its run's lock. */
  lost?(err: LockLostError): void;
}

/** When to re-mint: `margin` before the token's exp (a fifth of its lifetime, at most a minute). */
export function remintMarginMs(lifetimeMs: number): number {
  return Math.min(60_000, lifetimeMs / 5);
}

/** The token of one audience: the current one, a mint in progress, the re-mint timer. */
interface Slot {
  current?: MintedToken;
  pending?: Promise<MintedToken>;
  timer?: NodeJS.Timeout;
}

export class RunTokenLease implements RunTokens {
  private readonly minter: TokenMinter;
  private readonly request: MintRequest;
  private readonly lock: Omit<ExecutionLock, 'first'> | undefined;
  private readonly log: LeaseLog;
  private readonly hooks: LeaseHooks;
  private readonly live = new Set<string>();
  private readonly slots = new Map<string, Slot>();
  /** Every raw token this lease handed out, for redaction of what the handler logs or returns. */
  readonly raws: string[] = [];
  readonly audiences: string[];
  private closed = false;

  constructor(minter: TokenMinter, request: MintRequest, log: LeaseLog, hooks: LeaseHooks = {}, lock?: Omit<ExecutionLock, 'first'>) {
    this.minter = minter;
    this.request = request;
    this.audiences = request.audience;
    this.lock = lock;
    this.log = log;
    this.hooks = hooks;
  }

  get open(): boolean {
    return !this.closed;
  }

  /** The first audience's current token (what `ctx.token.claims` shows). */
  get primary(): MintedToken {
    const token = this.slots.get(this.audiences[0])?.current;
    if (!token) throw new ScopeError(`run ${this.request.run} has no token yet`);
    return token;
  }

  /** Every token the execution holds now, one per audience used so far. */
  held(): MintedToken[] {
    return this.audiences.map((a) => this.slots.get(a)?.current).filter((t): t is MintedToken => t !== undefined);
  }

  /**
   * Mints the first audience's token before the handler starts (revoking every earlier token of the run: a new execution
   * starts) and starts its re-mint timer.
   */
  async start(): Promise<MintedToken> {
    return this.token(this.audiences[0], true);
  }

  /** The current token for `audience`, minted on first use (concurrent first calls share one mint). */
  async token(audience: string, first = false): Promise<MintedToken> {
    if (!this.audiences.includes(audience)) {
      throw new ScopeError(
        `this job's token is not for "${audience}": its token.audience is [${this.audiences.join(', ')}]; add "${audience}" there to call it`,
      );
    }
    if (this.closed) throw new ScopeError(`run ${this.request.run} has ended: its tokens are revoked`);
    const slot = this.slot(audience);
    if (slot.current) return slot.current;
    slot.pending ??= this.mint(audience, first).finally(() => (slot.pending = undefined));
    const token = await slot.pending;
    if (this.closed) throw new ScopeError(`run ${this.request.run} has ended: its tokens are revoked`);
    return token;
  }

  private slot(audience: string): Slot {
    let slot = this.slots.get(audience);
    if (!slot) this.slots.set(audience, (slot = {}));
    return slot;
  }

  private async mint(audience: string, first: boolean): Promise<MintedToken> {
    const token = await this.minter.mint({ ...this.request, audience: [audience] }, this.lock && { ...this.lock, first });
    this.raws.push(token.raw);
    this.live.add(token.claims.jti);
    this.hooks.minted?.(token);
    if (this.closed) {
      await this.revoke(token.claims.jti);
      throw new ScopeError(`run ${this.request.run} has ended: its tokens are revoked`);
    }
    const slot = this.slot(audience);
    slot.current = token;
    this.schedule(audience);
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
  private schedule(audience: string, retryInMs?: number): void {
    const slot = this.slot(audience);
    const margin = remintMarginMs(this.request.lifetimeMs);
    const remaining = slot.current ? slot.current.claims.exp * 1000 - Date.now() : this.request.lifetimeMs;
    slot.timer = setTimeout(() => void this.remint(audience), retryInMs ?? Math.max(100, remaining - margin));
    slot.timer.unref();
  }

  private async remint(audience: string): Promise<void> {
    const slot = this.slot(audience);
    let next: MintedToken;
    try {
      next = await this.minter.mint({ ...this.request, audience: [audience] }, this.lock && { ...this.lock, first: false });
    } catch (err) {
      if (err instanceof LockLostError) return void this.hooks.lost?.(err);
      this.log.error({ err: (err as Error).message, audience }, 'could not re-mint the run token; retrying');
      // Try again while the current token still has time left, rather than let the run run out of it.
      if (!this.closed) this.schedule(audience, 1000);
      return;
    }
    this.raws.push(next.raw);
    this.live.add(next.claims.jti);
    this.hooks.minted?.(next);
    if (this.closed) return void (await this.revoke(next.claims.jti).catch(() => undefined));
    const oldJti = slot.current!.claims.jti;
    slot.current = next;
    // Requests sent with the old token a moment ago may still be in verification downstream: revoke it shortly after
    // (it has margin left; no new request carries it). close() revokes it at once if the run ends first.
    setTimeout(
      () => void this.revoke(oldJti).catch((err: Error) => this.log.error({ err: err.message }, 'could not revoke a re-minted token')),
      Math.min(5000, remintMarginMs(this.request.lifetimeMs) / 2),
    ).unref();
    this.log.info({ jti: next.claims.jti, audience }, 'token re-minted for a long run');
    this.schedule(audience);
  }

  /** Revokes every token this lease holds; idempotent. The handler's calls fail from here on. */
  async close(): Promise<void> {
    this.closed = true;
    for (const slot of this.slots.values()) clearTimeout(slot.timer);
    await Promise.all([...this.live].map((jti) => this.revoke(jti)));
  }
}
