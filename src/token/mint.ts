// Minting: sign a per-run JWT and register its jti as live, before the handler may use it.
import { randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { TokenClaims } from '../interfaces.ts';
import type { KeyStore } from './keys.ts';
import type { TokenStore } from './store.ts';

/** Extra lifetime beyond the job's timeout, so a run that ends right at its timeout still has a valid token for cleanup calls. */
export const LIFETIME_GRACE_MS = 30_000;

export interface MintRequest {
  job: string;
  run: string;
  attempt: number;
  audience: string[];
  scope: string[];
  lifetimeMs: number;
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
  constructor(keys: KeyStore, store: TokenStore, issuer: string) {
    this.keys = keys;
    this.store = store;
    this.issuer = issuer;
  }

  sign(req: MintRequest, nowMs = Date.now()): MintedToken {
    const iat = Math.floor(nowMs / 1000);
    const claims: TokenClaims = {
      iss: this.issuer,
      sub: `job:${req.job}`,
      aud: req.audience,
      scope: req.scope.join(' '),
      jti: randomUUID(),
      iat,
      nbf: iat,
      exp: Math.floor((nowMs + req.lifetimeMs) / 1000),
      run: req.run,
      att: req.attempt,
    };
    const { key, kid, alg } = this.keys.current;
    const raw = jwt.sign(claims, key, { algorithm: alg, keyid: kid, header: { alg, typ: 'at+jwt', kid } });
    return { raw, claims };
  }

  /** Signs and registers; the token is live when this resolves. */
  async mint(req: MintRequest): Promise<MintedToken> {
    const token = this.sign(req);
    await this.store.register(token.claims, token.claims.exp * 1000);
    return token;
  }

  revoke(jti: string): Promise<void> {
    return this.store.revoke(jti);
  }
}
