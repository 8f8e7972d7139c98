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

/** The token of one audience: the current one, a mint in progress, when to re-mint it. */
interface Slot {
  readonly lease: RunTokenLease;
  readonly audience: string;
  current?: MintedToken;
  pending?: Promise<MintedToken>;
  /** When the re-mint clock re-mints it (epoch ms), while it waits there. */
  remintAt?: number;
}

/**
 * The process's re-mint clock: one timer, set for the earliest re-mint due among every lease's tokens, instead of a timer
 * per token. Most runs end long before their token needs re-minting: while other runs overlap theirs, a run costs a Set
 * entry, added at mint and removed at close, and no timer is set or cleared (a timer per token cost a timer list per
 * distinct delay).
 */
class RemintClock {
  private readonly waiting = new Set<Slot>();
  private timer: NodeJS.Timeout | undefined;
  /** When the timer fires (epoch ms). */
  private armedAt = Infinity;

  add(slot: Slot, at: number): void {
    slot.remintAt = at;
    this.waiting.add(slot);
    if (at < this.armedAt) this.arm(at);
  }

  remove(slot: Slot): void {
    slot.remintAt = undefined;
    // Nothing waits any more: no timer is left behind (at concurrency 1 that is a timer per run, a cost lost in its others).
    if (this.waiting.delete(slot) && this.waiting.size === 0) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.armedAt = Infinity;
    }
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.armedAt = at;
    this.timer = setTimeout(() => this.fire(), Math.max(0, at - Date.now()));
    this.timer.unref();
  }

  /** Re-mints every token that is due, then sets the timer for the next one (if any waits). */
  private fire(): void {
    this.timer = undefined;
    this.armedAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const slot of this.waiting) {
      const at = slot.remintAt!;
      if (at <= now) {
        this.remove(slot);
        void slot.lease.remint(slot);
      } else if (at < next) next = at;
    }
    if (next < Infinity) this.arm(next);
  }
}

const clock = new RemintClock();

export class RunTokenLease implements RunTokens {
  private readonly minter: TokenMinter;
  private readonly request: MintRequest;
  private readonly lock: Omit<ExecutionLock, 'first'> | undefined;
  private readonly log: LeaseLog;
  private readonly hooks: LeaseHooks;
  private readonly live = new Set<string>();
  /** The first audience's slot; the others' are made when the handler first calls their service. */
  private readonly first: Slot;
  private others: Map<string, Slot> | undefined;
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
    this.first = { lease: this, audience: this.audiences[0] };
  }

  get open(): boolean {
    return !this.closed;
  }

  /** The first audience's current token (what `ctx.token.claims` shows). */
  get primary(): MintedToken {
    const token = this.first.current;
    if (!token) throw new ScopeError(`run ${this.request.run} has no token yet`);
    return token;
  }

  /** Every token the execution holds now, one per audience used so far. */
  held(): MintedToken[] {
    return this.audiences.map((a) => this.slot(a).current).filter((t): t is MintedToken => t !== undefined);
  }

  /**
   * Mints the first audience's token before the handler starts (revoking every earlier token of the run: a new execution
   * starts); the token then waits on the process's re-mint clock.
   */
  start(): Promise<MintedToken> {
    if (this.closed) return Promise.reject(new ScopeError(`run ${this.request.run} has ended: its tokens are revoked`));
    // mint() itself refuses a token the lease was closed during (it revokes it), so no second check is needed here.
    return (this.first.pending = this.mint(this.first, true));
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
    slot.pending ??= this.mint(slot, first);
    const token = await slot.pending;
    if (this.closed) throw new ScopeError(`run ${this.request.run} has ended: its tokens are revoked`);
    return token;
  }

  private slot(audience: string): Slot {
    if (audience === this.first.audience) return this.first;
    this.others ??= new Map();
    let slot = this.others.get(audience);
    if (!slot) this.others.set(audience, (slot = { lease: this, audience }));
    return slot;
  }

  /** What to mint for `audience`: a request that names that service alone (the lease's own when the job names one). */
  private requestFor(audience: string): MintRequest {
    return this.request.audience.length === 1 ? this.request : { ...this.request, audience: [audience] };
  }

  /** Mints the slot's token (the slot's `pending` while it does). */
  private async mint(slot: Slot, first: boolean): Promise<MintedToken> {
    let token: MintedToken;
    try {
      token = await this.minter.mint(this.requestFor(slot.audience), this.lock && { ...this.lock, first });
    } finally {
      slot.pending = undefined;
    }
    this.raws.push(token.raw);
    this.live.add(token.claims.jti);
    this.hooks.minted?.(token);
    if (this.closed) {
      await this.revoke(token.claims.jti);
      throw new ScopeError(`run ${this.request.run} has ended: its tokens are revoked`);
    }
    slot.current = token;
    this.schedule(slot);
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
  private schedule(slot: Slot, retryInMs?: number): void {
    const margin = remintMarginMs(this.request.lifetimeMs);
    const now = Date.now();
    const remaining = slot.current ? slot.current.claims.exp * 1000 - now : this.request.lifetimeMs;
    clock.add(slot, now + (retryInMs ?? Math.max(100, remaining - margin)));
  }

  /** The re-mint clock's call: a new token for the slot's audience, the old one revoked a moment later. */
  async remint(slot: Slot): Promise<void> {
    if (this.closed) return;
    const { audience } = slot;
    let next: MintedToken;
    try {
      next = await this.minter.mint(this.requestFor(audience), this.lock && { ...this.lock, first: false });
    } catch (err) {
      if (err instanceof LockLostError) return void this.hooks.lost?.(err);
      this.log.error({ err: (err as Error).message, audience }, 'could not re-mint the run token; retrying');
      // Try again while the current token still has time left, rather than let the run run out of it.
      if (!this.closed) this.schedule(slot, 1000);
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
    this.schedule(slot);
  }

  /** Revokes every token this lease holds; idempotent. The handler's calls fail from here on. */
  async close(): Promise<void> {
    this.closed = true;
    clock.remove(this.first);
    for (const slot of this.others?.values() ?? []) clock.remove(slot);
    if (this.live.size !== 1) return void (await Promise.all([...this.live].map((jti) => this.revoke(jti))));
    // Nearly always one token (one audience, no re-mint): revoked as revoke() does, without its frame.
    const jti = this.live.values().next().value!;
    this.live.clear();
    await this.minter.revoke(jti);
    this.hooks.revoked?.(jti);
  }
}
