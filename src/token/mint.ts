// Minting: sign a per-run JWT and register its jti as live, before the handler may use it.
import { randomUUID } from 'node:crypto';
import type { TokenClaims } from '../interfaces.ts';
import { currentJwks, KeyPublisher } from './jwks.ts';
import type { KeyStore, PublicJwk } from './signing-keys.ts';
import { Signer } from './signer.ts';
import type { ExecutionLock, TokenStore } from './store.ts';

/** Extra lifetime beyond the job's timeout, so a run that ends right at its timeout still has a valid token for cleanup calls. */
export const LIFETIME_GRACE_MS = 30_000;

export interface MintRequest {
  job: string;
  run: string;
  attempt: number;
  audience: string[];
  scope: string[];
  lifetimeMs: number;
  /** RFC 8693 actor: on whose behalf the run acts (who triggered it), if someone or something did. */
  act?: { sub: string; run?: string };
  /** `sub` when it is not the job (a background-work scope: `consumer:orders`); default `job:<job>`. */
  subject?: string;
  /** The `id` claim: what a scope handles (a message id), for the receiving service. */
  id?: string;
}

export interface MintedToken {
  raw: string;
  claims: TokenClaims;
}

/** Token lifetime for a job: its timeout plus a grace, capped; without a timeout, the cap (the run re-mints before expiry). */
export function tokenLifetime(timeoutMs: number | undefined, capMs: number): number {
  return Math.min(capMs, timeoutMs === undefined ? capMs : timeoutMs + LIFETIME_GRACE_MS);
}

export class TokenMinter {
  readonly keys: KeyStore;
  readonly store: TokenStore;
  readonly issuer: string;
  /** Keeps the signing key in the served JWKS while its tokens may be live, even after a rotation removes its file. */
  private readonly publisher: KeyPublisher;
  private readonly signer: Signer;
  /** Mints between signing and registration: while there are any, the next signature may go to the signing thread. */
  private minting = 0;
  /** `signingThread`: ES256 tokens of overlapping runs may be signed on a worker thread (token/signer.ts). */
  constructor(keys: KeyStore, store: TokenStore, issuer: string, signingThread = false) {
    this.keys = keys;
    this.store = store;
    this.issuer = issuer;
    this.publisher = new KeyPublisher(store.redis, store.prefix, keys.current);
    this.signer = new Signer(keys.current, signingThread);
  }

  /** What `GET /.well-known/jwks.json` serves: configured keys plus retired keys whose tokens may still be live. */
  jwks(): Promise<{ keys: PublicJwk[] }> {
    return currentJwks(this.keys, this.store.redis, this.store.prefix);
  }

  claims(req: MintRequest, nowMs = Date.now()): TokenClaims {
    const iat = Math.floor(nowMs / 1000);
    const claims: TokenClaims = {
      iss: this.issuer,
      sub: req.subject ?? `job:${req.job}`,
      aud: req.audience,
      scope: req.scope.join(' '),
      jti: randomUUID(),
      iat,
      nbf: iat,
      exp: Math.floor((nowMs + req.lifetimeMs) / 1000),
      run: req.run,
      att: req.attempt,
    };
    if (req.act) claims.act = req.act;
    if (req.id !== undefined) claims.id = req.id;
    return claims;
  }

  /**
   * Signs and registers; the token is live when this resolves, and its key is published in the JWKS until at least its
   * exp. With `lock`, only while that execution holds its run (else LockLostError); see TokenStore.register.
   */
  async mint(req: MintRequest, lock?: ExecutionLock): Promise<MintedToken> {
    const claims = this.claims(req);
    const signed = this.signer.sign(claims, this.minting > 0);
    this.minting++;
    try {
      const token = { raw: typeof signed === 'string' ? signed : await signed, claims };
      const expMs = claims.exp * 1000;
      // Both go out at once; the key's publication is nearly always confirmed already (no call: undefined). Marked as
      // handled at once: should the registration throw first, its failure is not an unhandled rejection.
      const published = this.publisher.ensure(expMs);
      published?.catch(() => undefined);
      await this.store.register(claims, expMs, lock);
      if (published) await published;
      return token;
    } finally {
      this.minting--;
    }
  }

  /** Stops the signing thread, if one was started. */
  close(): Promise<void> {
    return this.signer.close();
  }

  revoke(jti: string): Promise<void> {
    return this.store.revoke(jti);
  }
}
