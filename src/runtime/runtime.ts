// Wires a worker host from plain arguments: config -> registry -> control plane -> keys, tokens, clients -> workers.
// Tests build one with a private Redis and a temporary jobs folder.
import type { Redis } from 'ioredis';
import type { Config } from '../config.ts';
import { Control } from '../control/control.ts';
import type { Queues } from '../control/queues.ts';
import { ServiceClients } from '../http/clients.ts';
import { publishRegistry } from '../jobs/published.ts';
import type { Registry } from '../jobs/registry.ts';
import type { Logger } from '../log.ts';
import { loadKeys, type KeyStore } from '../token/keys.ts';
import { TokenMinter } from '../token/mint.ts';
import { TokenStore } from '../token/store.ts';
import { connect } from './redis.ts';
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

/**
 * The worker host of one process, on top of a control plane: signing keys, the token minter, the service clients and the
 * workers. `jobscope start`/`worker`/`server` build one (the server for the JWKS and the dashboard's view of this
 * process's workers); `list`, `trigger`, `cancel`, `pause` need only the control plane.
 */
export class Runtime {
  readonly config: RuntimeConfig;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly control: Control;
  readonly keys: KeyStore;
  readonly minter: TokenMinter;
  readonly clients: ServiceClients;
  workers: Workers | undefined;
  private readonly tokenRedis: Redis;
  private subscriber: Redis | undefined;

  constructor(config: RuntimeConfig, registry: Registry, logger: Logger, keys?: KeyStore) {
    this.config = config;
    this.registry = registry;
    this.logger = logger;
    this.control = new Control({ redisUrl: config.redisUrl, prefix: config.prefix, registry, logger });
    // Token registrations and revocations of many concurrent runs share round trips (see notes/BASELINE.md).
    this.tokenRedis = connect(config.redisUrl, { enableAutoPipelining: true });
    this.keys = keys ?? loadKeys(config);
    this.minter = new TokenMinter(this.keys, new TokenStore(this.tokenRedis, config.prefix), config.issuer);
    this.clients = new ServiceClients({ services: config.services, tokenHeader: config.tokenHeader });
  }

  /** The control plane's connection (BullMQ queues and workers are built from it). */
  get redis(): Redis {
    return this.control.redis;
  }
  get queues(): Queues {
    return this.control.queues;
  }
  get tokens(): TokenStore {
    return this.control.tokens;
  }

  /** What the HTTP server needs of this process: the control plane, the JWKS, and the workers whose runs /metrics counts. */
  serverParts() {
    return { control: this.control, jwks: () => this.minter.jwks(), workers: this.workers };
  }

  ready(timeoutMs = 10_000): Promise<void> {
    return this.control.ready(timeoutMs);
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

  /** Publishes this process's job definitions (without code) for clients that have no jobs folder. */
  publish(authoritative: boolean): Promise<void> {
    return publishRegistry(this.redis, this.control.queues.keys, this.registry, authoritative);
  }

  syncSchedules() {
    return this.control.syncSchedules(this.logger);
  }

  pause(name: string) {
    return this.control.pause(name);
  }

  resume(name: string) {
    return this.control.resume(name);
  }

  /** Cancels a run; an active run's tokens are revoked at once here too, not only when its worker reacts. */
  cancel(runId: string, reason?: string) {
    return this.control.cancel(runId, reason);
  }

  /** Graceful: stop taking work, hand back what is still active at the deadline, close every connection. */
  async close(): Promise<void> {
    await this.workers?.close(this.config.shutdownTimeoutMs);
    this.subscriber?.disconnect();
    await Promise.all([this.tokenRedis.quit().catch(() => undefined), this.control.close()]);
  }
}
