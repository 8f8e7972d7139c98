// createScopes: the run's token scope for background work that is not a jobscope run (a message consumer, a consumer of
// the application's own BullMQ queue, a webhook handler's follow-up work). `scopes.run(spec, fn)` mints with the same
// lease and store as a run (RunTokenLease, TokenMinter: the token is live in Redis before fn starts), gives fn the same
// ctx.service / ctx.http / ctx.token / ctx.signal as a job handler, and revokes every token in `finally`. Services accept
// these tokens with no change: same issuer, keys, claims (`sub` is the workload, `id` what it handles) and liveness.
import { randomUUID } from 'node:crypto';
import type { Got } from 'got';
import type { Redis } from 'ioredis';
import { loadConfig, type Config } from './config.ts';
import { parseDuration } from './duration.ts';
import { ConfigError, ScopeError } from './errors.ts';
import { ServiceClients } from './http/clients.ts';
import type { RunInfo, RunToken } from './interfaces.ts';
import { createLogger, type Logger } from './log.ts';
import { connect } from './redis/connect.ts';
import { ScopedToken } from './runtime/context.ts';
import { loadKeys } from './token/signing-keys.ts';
import { RunTokenLease } from './token/lease.ts';
import { TokenMinter, type MintRequest } from './token/mint.ts';
import { useSigningThread } from './token/signer.ts';
import { runInScope, type RunScope } from './token/scope.ts';
import { TOKEN_CONNECTION, TokenStore } from './token/store.ts';
import { scopeSpan } from './trace.ts';

export interface ScopesOptions {
  /** Default `redis://127.0.0.1:6379`: the runners' Redis (the verifiers check liveness there). */
  redisUrl?: string;
  /** The runners' JOBSCOPE_PREFIX; default `jobscope`. */
  prefix?: string;
  /** The runners' PEM P-256 key file(s) (JOBSCOPE_SIGNING_KEY_FILE), so the runners' JWKS serves the public key. */
  signingKeyFile?: string | string[];
  /** HS256 compatibility mode (JOBSCOPE_JWT_SECRET). */
  jwtSecret?: string;
  /** The services `ctx.service(name)` reaches: `{ orders: 'http://orders:4000' }`. */
  services?: Record<string, string>;
  /** Default `jobscope`: the verifiers' `issuer`. */
  issuer?: string;
  tokenHeader?: string;
  /** Cap of one token's lifetime (JOBSCOPE_TOKEN_MAX_LIFETIME, default 15 min); a longer scope re-mints before expiry. */
  tokenMaxLifetime?: string | number;
  /** Where the development key lives when no key is given (default `.jobscope`): the runners' own. */
  stateDir?: string;
  logger?: Logger;
}

/** What one scope's tokens allow and who they say is acting. */
export interface ScopeSpec {
  /** The workload, `<kind>:<name>` (`consumer:orders`): the token's `sub`. Never a user (`user:`) nor a job (`job:`). */
  subject: string;
  /** The services the scope may call (one token each, minted on first call, `aud` that service alone). */
  audience: string | string[];
  scope?: string[];
  /** Token lifetime: a duration ('2m') or ms; default 5 min, capped by tokenMaxLifetime; re-minted while fn lasts. */
  lifetime?: string | number;
  /** RFC 8693 actor: on whose behalf the work runs (`{ sub: 'user:alice' }`), when someone asked for it. */
  act?: { sub: string; run?: string };
  /** What the scope handles (a message id): the token's `id` claim, which the verifier exposes. */
  id?: string;
  /** Aborts ctx.signal (and revokes the tokens at once) when it aborts. */
  signal?: AbortSignal;
  /** A W3C traceparent the work continues (a message header), when tracing is on. */
  traceparent?: string;
}

/** The handler's side of a scope: a job handler's ctx.service / ctx.http / ctx.token / ctx.signal. */
export interface ScopeContext {
  /** `id`: the scope's own id (its tokens' `run` claim, `scope:<uuid>`); `subject` and `messageId` as given. */
  scope: { id: string; subject: string; messageId?: string };
  signal: AbortSignal;
  token: RunToken;
  service(name: string): Got;
  http: Got;
}

export interface Scopes {
  /** Runs fn inside a fresh token scope; resolves or rejects as fn does, once the tokens are revoked. */
  run<T>(spec: ScopeSpec, fn: (ctx: ScopeContext) => Promise<T> | T): Promise<T>;
  /** Aborts open scopes (their tokens are revoked), then closes the Redis connection. */
  close(): Promise<void>;
}

const SUBJECT = /^[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9._:/@-]{1,200}$/;
const DEFAULT_LIFETIME_MS = 5 * 60_000;

/** Refuses a subject that is not a workload name: a user, a job, or something that is not `<kind>:<name>`. */
export function checkSubject(subject: unknown): string {
  if (typeof subject !== 'string' || !SUBJECT.test(subject)) {
    throw new ScopeError(`scope subject ${JSON.stringify(subject)} is not a workload name such as "consumer:orders"`);
  }
  const kind = subject.slice(0, subject.indexOf(':'));
  if (kind === 'user' || kind === 'job') {
    throw new ScopeError(
      `scope subject "${subject}": background work acts as a workload ("consumer:orders"), not as a ${kind}; put who asked for it in act`,
    );
  }
  return subject;
}

function lifetimeOf(value: string | number | undefined, capMs: number): number {
  if (value === undefined) return Math.min(DEFAULT_LIFETIME_MS, capMs);
  const ms = parseDuration(value);
  if (ms === null || ms <= 0) throw new ScopeError(`scope lifetime ${JSON.stringify(value)} is not a duration ('30s', '2m') or ms`);
  return Math.min(ms, capMs);
}

function configOf(opts: ScopesOptions): Config {
  const env: Record<string, string | undefined> = {
    REDIS_URL: opts.redisUrl,
    JOBSCOPE_PREFIX: opts.prefix,
    JOBSCOPE_SIGNING_KEY_FILE: Array.isArray(opts.signingKeyFile) ? opts.signingKeyFile.join(',') : opts.signingKeyFile,
    JOBSCOPE_JWT_SECRET: opts.jwtSecret,
    JOBSCOPE_ISSUER: opts.issuer,
    JOBSCOPE_TOKEN_HEADER: opts.tokenHeader,
    JOBSCOPE_TOKEN_MAX_LIFETIME: opts.tokenMaxLifetime === undefined ? undefined : String(opts.tokenMaxLifetime),
    JOBSCOPE_STATE_DIR: opts.stateDir,
  };
  // The environment's names, filled from the options alone, so the one validation (config.ts) applies.
  return loadConfig(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)));
}

export function createScopes(opts: ScopesOptions = {}): Scopes {
  return new ScopeHost(configOf(opts), opts.services ?? {}, opts.logger ?? createLogger('info'));
}

/** One Redis connection, the signing key and the service clients, shared by every scope it runs. */
class ScopeHost implements Scopes {
  private readonly config: Config;
  private readonly logger: Logger;
  private readonly redis: Redis;
  private readonly minter: TokenMinter;
  private readonly clients: ServiceClients;
  /** Open scopes: close() revokes their tokens before it closes the connection. */
  private readonly open = new Map<AbortController, () => Promise<void>>();
  private closed = false;

  constructor(config: Config, services: Record<string, string>, logger: Logger) {
    this.config = config;
    this.logger = logger;
    this.redis = connect(config.redisUrl, TOKEN_CONNECTION);
    this.minter = new TokenMinter(
      loadKeys(config),
      new TokenStore(this.redis, config.prefix),
      config.issuer,
      useSigningThread(config.signingThread, config.redisUrl),
    );
    this.clients = new ServiceClients({ services, tokenHeader: config.tokenHeader });
  }

  private lease(spec: ScopeSpec, subject: string, id: string, log: Logger): RunTokenLease {
    const audience = typeof spec.audience === 'string' ? [spec.audience] : [...(spec.audience ?? [])];
    if (audience.length === 0) throw new ConfigError(`scope ${subject}: audience names no service`);
    if (spec.id !== undefined && (typeof spec.id !== 'string' || spec.id.length > 256)) {
      throw new ScopeError(`scope ${subject}: id must be a string of at most 256 characters`);
    }
    const request: MintRequest = {
      job: subject,
      subject,
      run: id,
      attempt: 1,
      audience,
      scope: spec.scope ?? [],
      lifetimeMs: lifetimeOf(spec.lifetime, this.config.tokenMaxLifetimeMs),
      ...(spec.act ? { act: spec.act } : {}),
      ...(spec.id !== undefined ? { id: spec.id } : {}),
    };
    return new RunTokenLease(this.minter, request, log);
  }

  async run<T>(spec: ScopeSpec, fn: (ctx: ScopeContext) => Promise<T> | T): Promise<T> {
    if (this.closed) throw new ScopeError('scopes.close() was called: no new scope');
    const subject = checkSubject(spec.subject);
    const id = `scope:${randomUUID()}`;
    const log = this.logger.child({ scope: id, subject });
    const lease = this.lease(spec, subject, id, log);
    const info: RunInfo = { id, job: subject, attempt: 1, trigger: 'api', triggeredBy: spec.act?.sub ?? subject };
    const controller = new AbortController();
    const scope: RunScope = { run: info, signal: controller.signal, tokens: lease, open: true };
    // One revocation, awaited by whoever ends the scope first: an abort (the caller's signal, close()) revokes at once, as a
    // run's abort does, and fn's end waits for that same revocation before it resolves.
    let revoking: Promise<void> | undefined;
    const revoke = () =>
      (revoking ??= lease
        .close()
        .catch((err: Error) => log.error({ err: err.message }, 'could not revoke a scope token; it dies at its expiry')));
    controller.signal.addEventListener('abort', () => {
      scope.open = false;
      void revoke();
    });
    const onAbort = () => controller.abort(spec.signal?.reason);
    spec.signal?.addEventListener('abort', onAbort, { once: true });
    this.open.set(controller, revoke);
    if (spec.signal?.aborted) onAbort();
    return scopeSpan({ subject, scopeId: id, messageId: spec.id, traceparent: spec.traceparent }, async (parent) => {
      scope.trace = parent;
      try {
        await lease.start();
        return await runInScope(scope, async () => fn(this.context(scope, subject, spec.id)));
      } finally {
        scope.open = false;
        this.open.delete(controller);
        spec.signal?.removeEventListener('abort', onAbort);
        await revoke();
      }
    });
  }

  private context(scope: RunScope, subject: string, messageId: string | undefined): ScopeContext {
    const { clients } = this;
    const services = new Map<string, Got>();
    let http: Got | undefined;
    return {
      scope: { id: scope.run.id, subject, ...(messageId !== undefined ? { messageId } : {}) },
      signal: scope.signal,
      token: new ScopedToken(scope),
      service(name: string) {
        let client = services.get(name);
        if (!client) services.set(name, (client = clients.service(name, scope.run.id, scope.signal)));
        return client;
      },
      get http() {
        return (http ??= clients.http(scope.run.id, scope.signal));
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    const revoked = [...this.open].map(([controller, revoke]) => {
      controller.abort(new ScopeError('scopes closed'));
      return revoke();
    });
    await Promise.all(revoked);
    await this.minter.close();
    await this.redis.quit().catch(() => undefined);
  }
}
