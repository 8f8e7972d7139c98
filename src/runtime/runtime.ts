// Wires the pieces for one process from plain arguments: config -> registry -> connections, keys, tokens, queues -> workers.
// The CLI and the server build one Runtime; tests build one with a private Redis and a temporary jobs folder.
import type { Redis } from 'ioredis';
import type { Config } from '../config.ts';
import { redactUrl } from '../redact.ts';
import { ServiceClients } from '../http/clients.ts';
import type { Registry } from '../jobs/registry.ts';
import type { Logger } from '../log.ts';
import { loadKeys, type KeyStore } from '../token/keys.ts';
import { TokenMinter } from '../token/mint.ts';
import { TokenStore } from '../token/store.ts';
import { Queues } from './queues.ts';
import { connect } from './redis.ts';
import { pauseJob, resumeJob, syncSchedules } from './scheduler.ts';
import { Workers } from './worker.ts';

export type RuntimeConfig = Pick<
  Config,
  | 'redisUrl'
  | 'prefix'
  | 'services'
  | 'signingKeyFiles'
  | 'jwtSecret'
  | 'issuer'
  | 'tokenHeader'
  | 'tokenMaxLifetimeMs'
  | 'shutdownTimeoutMs'
  | 'lockDurationMs'
  | 'runawayGraceMs'
  | 'stateDir'
>;

export class Runtime {
  readonly config: RuntimeConfig;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly redis: Redis;
  readonly keys: KeyStore;
  readonly tokens: TokenStore;
  readonly minter: TokenMinter;
  readonly queues: Queues;
  readonly clients: ServiceClients;
  workers: Workers | undefined;
  private readonly tokenRedis: Redis;
  private subscriber: Redis | undefined;

  constructor(config: RuntimeConfig, registry: Registry, logger: Logger, keys?: KeyStore) {
    this.config = config;
    this.registry = registry;
    this.logger = logger;
    this.redis = connect(config.redisUrl);
    // Token registrations and revocations of many concurrent runs share round trips (see notes/BASELINE.md).
    this.tokenRedis = connect(config.redisUrl, { enableAutoPipelining: true });
    this.keys = keys ?? loadKeys(config);
    this.tokens = new TokenStore(this.tokenRedis, config.prefix);
    this.minter = new TokenMinter(this.keys, this.tokens, config.issuer);
    this.queues = new Queues(registry, this.redis, config.prefix, this.tokens);
    this.clients = new ServiceClients({ services: config.services, tokenHeader: config.tokenHeader });
  }

  /** Resolves when Redis answers; rejects with a clear message after `timeoutMs`. */
  async ready(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.redis.ping();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`cannot reach Redis at ${redactUrl(this.config.redisUrl)}: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  async startWorkers(only?: string[]): Promise<Workers> {
    this.subscriber = this.redis.duplicate();
    // duplicate() does not copy listeners: without one, a Redis outage is an unhandled 'error' event.
    this.subscriber.on('error', () => {});
    this.workers = new Workers({
      registry: this.registry,
      queues: this.queues,
      minter: this.minter,
      clients: this.clients,
      connection: this.redis,
      subscriber: this.subscriber,
      prefix: this.config.prefix,
      tokenMaxLifetimeMs: this.config.tokenMaxLifetimeMs,
      lockDurationMs: this.config.lockDurationMs,
      runawayGraceMs: this.config.runawayGraceMs,
      logger: this.logger,
      only,
    });
    await this.workers.start();
    return this.workers;
  }

  syncSchedules() {
    return syncSchedules(this.queues, this.logger);
  }

  pause(name: string) {
    return pauseJob(this.queues, name);
  }

  resume(name: string) {
    return resumeJob(this.queues, name);
  }

  /** Cancels a run; an active run's tokens are revoked at once here too, not only when its worker reacts. */
  cancel(runId: string, reason?: string) {
    return this.queues.cancel(runId, reason);
  }

  /** Graceful: stop taking work, let active runs finish until the deadline, revoke, close every connection. */
  async close(): Promise<void> {
    await this.workers?.close(this.config.shutdownTimeoutMs);
    await this.queues.close();
    this.subscriber?.disconnect();
    await Promise.all([this.tokenRedis.quit().catch(() => undefined), this.redis.quit().catch(() => undefined)]);
  }
}
