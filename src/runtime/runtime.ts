// Wires a worker host from plain arguments: config -> registry -> control plane -> keys, tokens, clients -> run executor.
// Tests build one with a private Redis and a temporary jobs folder.
import type { Redis } from 'ioredis';
import type { Config } from '../config.ts';
import { Control } from '../control/control.ts';
import { applyRetention, type Queues } from '../control/queues.ts';
import { ServiceClients } from '../http/clients.ts';
import { publishRegistry } from '../jobs/published.ts';
import { loadJobs, type Registry } from '../jobs/registry.ts';
import type { Logger } from '../log.ts';
import { loadKeys, type KeyStore } from '../token/signing-keys.ts';
import { TokenMinter } from '../token/mint.ts';
import { useSigningThread } from '../token/signer.ts';
import type { TokenStore } from '../token/store.ts';
import type { RedisErrorLog } from '../redis/connect.ts';
import { Alerts } from '../control/alerts.ts';
import { JobFilesError } from '../errors.ts';
import { workflowProblems } from '../jobs/workflow.ts';
import { Heartbeat } from './heartbeat.ts';
import type { FolderChanges } from '../jobs/watch.ts';
import { RunExecutor } from './executor.ts';

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
  | 'maxStalls'
  | 'runawayGraceMs'
  | 'alertWebhook'
  | 'publicUrl'
  | 'stateDir'
  | 'retention'
> &
  Partial<Pick<Config, 'traceUrl' | 'project' | 'redisOutageLogMs' | 'signingThread'>>;

/**
 * The worker host of one process, on top of a control plane: signing keys, the token minter, the service clients and the
 * run executor. `jobscope start`/`worker`/`server` build one (the server for the JWKS and the dashboard's view of this
 * process's runs); `list`, `trigger`, `cancel`, `pause` need only the control plane.
 */
export class Runtime {
  readonly config: RuntimeConfig;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly control: Control;
  readonly keys: KeyStore;
  readonly minter: TokenMinter;
  readonly clients: ServiceClients;
  /** The run executor, once startWorkers() made this process a worker. */
  executor: RunExecutor | undefined;
  readonly alerts: Alerts;
  private heartbeat: Heartbeat | undefined;
  private subscriber: Redis | undefined;

  constructor(config: RuntimeConfig, registry: Registry, logger: Logger, keys?: KeyStore) {
    // `then` across files: unknown jobs and cycles stop a process that would run them, naming the files.
    const problems = workflowProblems([...registry.jobs.values()]);
    if (problems.length) throw new JobFilesError(problems);
    this.config = config;
    this.registry = registry;
    this.logger = logger;
    this.control = new Control({
      redisUrl: config.redisUrl,
      prefix: config.prefix,
      registry,
      logger,
      retention: config.retention,
      project: config.project,
      outageLogMs: config.redisOutageLogMs,
    });
    this.keys = keys ?? loadKeys(config);
    // The control plane's token store, on the connection the run executor's takers use: a run's completion then reaches
    // Redis after the revocation of its tokens without waiting for Redis's answer to it (Execution.close).
    this.minter = new TokenMinter(
      this.keys,
      this.control.tokens,
      config.issuer,
      useSigningThread(config.signingThread ?? 'auto', config.redisUrl),
    );
    this.clients = new ServiceClients({ services: config.services, tokenHeader: config.tokenHeader });
    this.alerts = new Alerts(
      this.control.redis,
      this.control.queues.keys,
      config.prefix,
      {
        defaultWebhook: config.alertWebhook,
        publicUrl: config.publicUrl,
      },
      logger,
      this.redisLog,
    );
  }

  /**
   * The process's Redis health and error log: every connection reports into it (watch(connection) or note(err)), so an
   * outage is one line when lost, one per JOBSCOPE_REDIS_OUTAGE_LOG_INTERVAL while it lasts and one when back.
   */
  get redisLog(): RedisErrorLog {
    return this.control.redisLog!;
  }

  /**
   * The jobs this process serves: `only` exactly, else by worker group: with `groups`, the jobs of those groups; without,
   * the jobs that have no group (a job with a group runs only where `--group` names it).
   */
  servedJobs(only?: string[], groups?: string[]): string[] {
    if (only?.length) return only.map((name) => this.registry.get(name).name);
    return this.registry.names.filter((name) => {
      const group = this.registry.get(name).group;
      return groups?.length ? group !== undefined && groups.includes(group) : group === undefined;
    });
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

  /** What the HTTP server needs of this process: the control plane, the JWKS, and the run executor whose runs /metrics counts. */
  serverParts() {
    return {
      control: this.control,
      jwks: () => this.minter.jwks(),
      executor: this.executor,
      alerts: this.executor && this.alerts,
      traceUrl: this.config.traceUrl,
    };
  }

  ready(timeoutMs = 10_000): Promise<void> {
    return this.control.ready(timeoutMs);
  }

  /** Makes this process a worker: the run executor serves the jobs (`only`, else by group), the heartbeat says so. */
  async startWorkers(only?: string[], groups?: string[]): Promise<RunExecutor> {
    const served = this.servedJobs(only, groups);
    this.subscriber = this.redis.duplicate();
    // duplicate() does not copy listeners: without one, a Redis outage is an unhandled 'error' event.
    this.redisLog.watch(this.subscriber, { bindings: { connection: 'cancel-subscriber' } });
    this.executor = new RunExecutor({
      registry: this.registry,
      control: this.control,
      alerts: this.alerts,
      queues: this.queues,
      minter: this.minter,
      clients: this.clients,
      connection: this.redis,
      subscriber: this.subscriber,
      prefix: this.config.prefix,
      tokenMaxLifetimeMs: this.config.tokenMaxLifetimeMs,
      lockDurationMs: this.config.lockDurationMs,
      maxStalls: this.config.maxStalls,
      runawayGraceMs: this.config.runawayGraceMs,
      logger: this.logger,
      only: served,
    });
    await this.executor.start();
    this.alerts.startDelivery(this.redis, this.config.prefix);
    const executor = this.executor;
    this.heartbeat = new Heartbeat(
      this.redis,
      this.control.queues.keys,
      { id: executor.processId, jobs: () => executor.jobs, groups: groups ?? [] },
      () => executor.activeRuns(),
    );
    await this.heartbeat.start();
    return executor;
  }

  /**
   * Loads the jobs folder afresh (--watch) and makes the run executor, the published definitions and, for a process that owns
   * them, the schedules follow. A file that fails to load keeps its previous definition; its problems are returned.
   */
  async reload(
    dir: string,
    version: number,
    opts: { only?: string[]; groups?: string[]; ownsSchedules: boolean; changes?: FolderChanges },
  ) {
    // Unchanged job files keep their loaded job (the same object), so their queue takers are not restarted; a changed helper
    // may change any job: then every file is loaded again.
    const { changes } = opts;
    const reuse =
      changes && !changes.helpers
        ? (file: string) => (changes.files.has(file) ? undefined : [...this.registry.jobs.values()].find((j) => j.file === file))
        : undefined;
    const { jobs, errors } = await loadJobs(dir, version, reuse);
    const failed = new Set(errors.map((e) => e.file));
    const kept = [...this.registry.jobs.values()].filter((j) => failed.has(j.file) && !jobs.some((n) => n.name === j.name));
    this.registry.replace([...jobs.filter((j) => !failed.has(j.file)), ...kept]);
    applyRetention(this.registry, this.config.retention);
    if (this.executor) await this.executor.serve(this.servedJobs(opts.only, opts.groups).filter((n) => this.registry.has(n)));
    await this.publish(opts.ownsSchedules);
    if (opts.ownsSchedules) await this.syncSchedules();
    return { jobs: this.registry.names, errors };
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

  /**
   * Graceful: stop taking work, hand back what is still active at the deadline, close every connection. With Redis lost
   * (at the deadline or now), nothing can be handed back or said goodbye to: the runs still here are named in the log (the
   * stalled-run check gives them to another worker once Redis is back) and the connections are dropped, so the process
   * exits within the deadline instead of waiting for Redis.
   */
  async close(): Promise<void> {
    await this.executor?.close(this.config.shutdownTimeoutMs);
    const force = this.redisLog.lost;
    if (force) {
      this.redisLog.close();
      await this.heartbeat?.stop({ force });
      await Promise.all([this.alerts.close({ force }), this.control.close({ force }), this.minter.close()]);
      this.subscriber?.disconnect();
      return;
    }
    await this.heartbeat?.stop();
    await this.alerts.close();
    this.subscriber?.disconnect();
    await Promise.all([this.control.close(), this.minter.close()]);
  }
}
