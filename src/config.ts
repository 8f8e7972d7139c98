// Environment -> one typed, validated Config. The only module that reads process.env (through loadConfig's argument).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDuration } from './duration.ts';
import { ConfigError } from './errors.ts';
import type { KeepRule, Retention } from './interfaces.ts';
import { parseRedisUrl } from './redis/url.ts';

export interface Config {
  /** Redis URL; `redisUrlExplicit` is false when it is the default (the embedded Redis may then be started). */
  redisUrl: string;
  redisUrlExplicit: boolean;
  jobsDir: string;
  prefix: string;
  /** Who this runner is on a shared Redis: the `name` of the package.json above the jobs folder (see control/project.ts). */
  project: string;
  /** Port of the embedded redis-server (`jobscope start` without REDIS_URL); JOBSCOPE_EMBEDDED_REDIS_PORT, default 6379. */
  embeddedRedisPort: number;
  services: Record<string, string>;
  port: number;
  host: string;
  user: string | undefined;
  password: string | undefined;
  viewerUser: string | undefined;
  viewerPassword: string | undefined;
  /** JOBSCOPE_USERS_FILE: more logins (admin, operator, viewer; optionally limited to job groups), scrypt-hashed. */
  usersFile: string | undefined;
  /** PEM P-256 private key files; the last one signs, all are published in the JWKS. */
  signingKeyFiles: string[];
  jwtSecret: string | undefined;
  issuer: string;
  /** Extra outgoing header carrying the token (e.g. X-Access-Token), besides Authorization. */
  tokenHeader: string | undefined;
  tokenMaxLifetimeMs: number;
  /**
   * JOBSCOPE_SIGNING_THREAD: whether ES256 tokens of overlapping runs are signed on a worker thread (`on`), on the main
   * thread (`off`), or on a thread when the host has a core for it (`auto`, the default: see token/signer.ts).
   */
  signingThread: SigningThread;
  shutdownTimeoutMs: number;
  /** JOBSCOPE_REDIS_OUTAGE_LOG_INTERVAL: while Redis is unreachable, how often a process says so again (default 30 s). */
  redisOutageLogMs: number;
  /** BullMQ's lock on an active run and its stalled-run check: a worker silent this long loses the run to another. */
  lockDurationMs: number;
  /** How many times in a row a run's worker may die (crash, freeze past its lock) before the run fails for good. */
  maxStalls: number;
  /** How long a run that ignored its abort (timeout, cancel) keeps its concurrency slot before it is reported a runaway. */
  runawayGraceMs: number;
  /** JOBSCOPE_ALERT_WEBHOOK: where alerts go for jobs without their own `alert.webhook`. */
  alertWebhook: string | undefined;
  /** JOBSCOPE_PUBLIC_URL: the dashboard's address as people reach it (links in alerts). */
  publicUrl: string;
  /** JOBSCOPE_TRACE_URL: a trace viewer's URL with `{traceId}` (Jaeger, Tempo): the Run page links to the run's trace. */
  traceUrl: string | undefined;
  logLevel: string;
  /** Where the dev key and the embedded Redis keep their files. */
  stateDir: string;
  /** Services allowed to call POST /oauth/introspect: client id -> secret (JOBSCOPE_INTROSPECT_CLIENTS). */
  introspectClients: Record<string, string>;
  /** Finished runs and log lines kept by default (JOBSCOPE_KEEP_COMPLETED, JOBSCOPE_KEEP_FAILED, JOBSCOPE_KEEP_LOGS). */
  retention: Retention;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Reads a `.env` file (KEY=value lines) into an object; values already in `env` win. */
export function readDotEnv(file: string, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (!existsSync(file)) return env;
  const out: NodeJS.ProcessEnv = {};
  for (const raw of readFileSync(file, 'utf8').split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq < 1) continue;
    const key = line.slice(0, eq).trim();
    let value = line.slice(eq + 1).trim();
    if (/^(['"]).*\1$/.test(value)) value = value.slice(1, -1);
    out[key] = value;
  }
  return { ...out, ...env };
}

export function parseServices(value: string | undefined): Record<string, string> {
  const services: Record<string, string> = {};
  if (!value?.trim()) return services;
  for (const part of value.split(',')) {
    const item = part.trim();
    if (!item) continue;
    const eq = item.indexOf('=');
    const name = item.slice(0, eq).trim();
    const url = item.slice(eq + 1).trim();
    if (eq < 1 || !/^[A-Za-z0-9_.-]+$/.test(name)) {
      throw new ConfigError(`JOBSCOPE_SERVICES: "${item}" is not name=url (example: system=http://127.0.0.1:4000)`);
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new ConfigError(`JOBSCOPE_SERVICES: service "${name}" has an invalid URL "${url}"`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new ConfigError(`JOBSCOPE_SERVICES: service "${name}" must use http or https, got ${parsed.protocol}`);
    }
    services[name] = url.endsWith('/') ? url : `${url}/`;
  }
  return services;
}

/**
 * JOBSCOPE_INTROSPECT_CLIENTS: `id:secret,id:secret`. The id is the service's name (its audience); the secret is 16+ characters
 * that need no encoding in an HTTP Basic header or a form (letters, digits, '-', '_', '.', '~': e.g. `openssl rand -hex 24`).
 */
export function parseIntrospectClients(value: string | undefined): Record<string, string> {
  const clients: Record<string, string> = {};
  for (const part of (value ?? '').split(',')) {
    const item = part.trim();
    if (!item) continue;
    const colon = item.indexOf(':');
    const id = item.slice(0, colon);
    const secret = item.slice(colon + 1);
    if (colon < 1 || !/^[A-Za-z0-9_.-]+$/.test(id)) {
      throw new ConfigError(`JOBSCOPE_INTROSPECT_CLIENTS: an entry is not id:secret (example: system:$(openssl rand -hex 24))`);
    }
    if (secret.length < 16 || !/^[A-Za-z0-9._~-]+$/.test(secret)) {
      throw new ConfigError(
        `JOBSCOPE_INTROSPECT_CLIENTS: the secret of "${id}" must be 16+ characters of A-Z a-z 0-9 - _ . ~ (openssl rand -hex 24)`,
      );
    }
    if (Object.hasOwn(clients, id)) throw new ConfigError(`JOBSCOPE_INTROSPECT_CLIENTS: "${id}" is listed twice`);
    clients[id] = secret;
  }
  return clients;
}

function parsePort(value: string | undefined, fallback: number, name = 'PORT'): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(`${name}: "${value}" is not a port number (0-65535)`);
  return n;
}

function duration(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const ms = parseDuration(value);
  if (ms === null) throw new ConfigError(`${name}: "${value}" is not a duration (examples: 500ms, 30s, 15m)`);
  return ms;
}

function outageLogInterval(value: string | undefined): number {
  const ms = duration('JOBSCOPE_REDIS_OUTAGE_LOG_INTERVAL', value, 30_000);
  if (ms < 100) throw new ConfigError(`JOBSCOPE_REDIS_OUTAGE_LOG_INTERVAL: "${value}" is too short; use at least 100ms (default 30s)`);
  return ms;
}

function traceUrl(value: string | undefined): string | undefined {
  const url = httpUrl('JOBSCOPE_TRACE_URL', value);
  if (url !== undefined && !url.includes('{traceId}')) {
    throw new ConfigError('JOBSCOPE_TRACE_URL: must contain {traceId}, e.g. http://jaeger:16686/trace/{traceId}');
  }
  return url;
}

function httpUrl(name: string, value: string | undefined): string | undefined {
  if (!value) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`${name}: "${value}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`${name}: must be an http(s) URL`);
  return value;
}

/** JOBSCOPE_MAX_STALLS: a whole number from 1 (default 3). */
function maxStalls(value: string | undefined): number {
  if (value === undefined || value.trim() === '') return 3;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1000) {
    throw new ConfigError(`JOBSCOPE_MAX_STALLS: "${value}" is not a whole number from 1 to 1000 (default 3)`);
  }
  return n;
}

export type SigningThread = 'auto' | 'on' | 'off';

function signingThread(value: string | undefined): SigningThread {
  const v = (value ?? '').trim().toLowerCase() || 'auto';
  if (v === 'auto' || v === 'on' || v === 'off') return v;
  throw new ConfigError(`JOBSCOPE_SIGNING_THREAD: "${value}" is not auto, on or off (default auto)`);
}

function lockDuration(value: string | undefined): number {
  const ms = duration('JOBSCOPE_LOCK_DURATION', value, 10_000);
  // Locks are renewed every half duration: below a second, one slow event-loop turn would lose a healthy run.
  if (ms < 1000) throw new ConfigError(`JOBSCOPE_LOCK_DURATION: "${value}" is too short; use at least 1s (default 10s)`);
  return ms;
}

/** JOBSCOPE_KEEP_COMPLETED / _FAILED: `count,age` (`1000,7d`), or one of them (`500`, `12h`); `age` becomes seconds. */
export function parseKeep(name: string, value: string | undefined, fallback: KeepRule): KeepRule {
  if (value === undefined || value.trim() === '') return fallback;
  const rule: KeepRule = {};
  for (const part of value.split(',').map((p) => p.trim())) {
    if (/^\d+$/.test(part) && rule.count === undefined) rule.count = Number(part);
    else {
      const ms = /\d(ms|s|m|h|d)$/.test(part) ? parseDuration(part) : null;
      if (ms === null || ms < 1000 || rule.age !== undefined) {
        throw new ConfigError(`${name}: "${value}" is not count,age (examples: 1000,7d or 500 or 12h)`);
      }
      rule.age = Math.ceil(ms / 1000);
    }
  }
  return rule;
}

function keepLogs(value: string | undefined): number {
  if (value === undefined || value === '') return 1000;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new ConfigError(`JOBSCOPE_KEEP_LOGS: "${value}" is not a line count (1 or more)`);
  return Number(value);
}

function pair(env: NodeJS.ProcessEnv, userVar: string, passVar: string): [string | undefined, string | undefined] {
  const user = env[userVar] || undefined;
  const pass = env[passVar] || undefined;
  if ((user === undefined) !== (pass === undefined)) {
    throw new ConfigError(`${userVar} and ${passVar} must be set together`);
  }
  return [user, pass];
}

/** Where Redis is: one server (`redis://`), a Sentinel-monitored master, or a Redis Cluster. */
/**
 * The project a jobs folder belongs to: the `name` of the nearest package.json at or above the folder holding it (what every
 * checkout and host of one project shares), else that folder's name.
 */
export function projectName(jobsDir: string): string {
  const home = path.dirname(jobsDir);
  for (let dir = home; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const name = (JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown }).name;
        if (typeof name === 'string' && name.trim()) return name.trim();
      } catch {
        // not readable JSON: look further up
      }
    }
    if (path.dirname(dir) === dir) return path.basename(home) || 'jobscope';
  }
}

export function loadConfig(env: NodeJS.ProcessEnv, cwd = process.cwd()): Config {
  const [user, password] = pair(env, 'JOBSCOPE_USER', 'JOBSCOPE_PASSWORD');
  const [viewerUser, viewerPassword] = pair(env, 'JOBSCOPE_VIEWER_USER', 'JOBSCOPE_VIEWER_PASSWORD');
  if (viewerUser !== undefined && viewerUser === user) {
    throw new ConfigError('JOBSCOPE_VIEWER_USER must differ from JOBSCOPE_USER');
  }
  const embeddedRedisPort = parsePort(env.JOBSCOPE_EMBEDDED_REDIS_PORT, 6379, 'JOBSCOPE_EMBEDDED_REDIS_PORT');
  const redisUrl = env.REDIS_URL || `redis://127.0.0.1:${embeddedRedisPort}`;
  const cluster = parseRedisUrl(redisUrl).kind === 'cluster';
  // On a Redis Cluster every key of jobscope must hash to one slot (BullMQ's and jobscope's scripts use several keys):
  // a prefix in braces is a hash tag.
  const prefix = env.JOBSCOPE_PREFIX || (cluster ? '{jobscope}' : 'jobscope');
  if (!/^(\{[A-Za-z0-9_.-]+\}|[A-Za-z0-9_.-]+)$/.test(prefix)) {
    throw new ConfigError(`JOBSCOPE_PREFIX: "${prefix}" may only contain letters, digits, '_', '.' and '-' (or be such a name in braces)`);
  }
  if (cluster && !prefix.startsWith('{')) {
    throw new ConfigError(`JOBSCOPE_PREFIX: on a Redis Cluster the prefix must be a hash tag in braces, e.g. {${prefix}}`);
  }
  const logLevel = env.LOG_LEVEL || 'info';
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`LOG_LEVEL: "${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  const tokenHeader = env.JOBSCOPE_TOKEN_HEADER || undefined;
  if (tokenHeader !== undefined && (!/^[A-Za-z0-9-]+$/.test(tokenHeader) || tokenHeader.toLowerCase() === 'authorization')) {
    throw new ConfigError(`JOBSCOPE_TOKEN_HEADER: "${tokenHeader}" is not a usable header name (example: X-Access-Token)`);
  }
  const keyFiles = (env.JOBSCOPE_SIGNING_KEY_FILE || '')
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean)
    .map((f) => path.resolve(cwd, f));
  const jwtSecret = env.JOBSCOPE_JWT_SECRET || undefined;
  if (jwtSecret !== undefined && keyFiles.length > 0) {
    throw new ConfigError('set either JOBSCOPE_SIGNING_KEY_FILE (ES256) or JOBSCOPE_JWT_SECRET (HS256 compatibility), not both');
  }
  if (jwtSecret !== undefined && Buffer.byteLength(jwtSecret) < 32) {
    throw new ConfigError('JOBSCOPE_JWT_SECRET must be at least 32 bytes (RFC 7518 3.2: a key as long as the HS256 output)');
  }
  const jobsDir = path.resolve(cwd, env.JOBSCOPE_JOBS || './jobs');
  return {
    redisUrl,
    redisUrlExplicit: Boolean(env.REDIS_URL),
    jobsDir,
    prefix,
    project: projectName(jobsDir),
    embeddedRedisPort,
    services: parseServices(env.JOBSCOPE_SERVICES),
    port: parsePort(env.PORT, 3000),
    host: env.HOST || '0.0.0.0',
    user,
    password,
    viewerUser,
    viewerPassword,
    usersFile: env.JOBSCOPE_USERS_FILE ? path.resolve(cwd, env.JOBSCOPE_USERS_FILE) : undefined,
    signingKeyFiles: keyFiles,
    jwtSecret,
    issuer: env.JOBSCOPE_ISSUER || 'jobscope',
    tokenHeader,
    tokenMaxLifetimeMs: duration('JOBSCOPE_TOKEN_MAX_LIFETIME', env.JOBSCOPE_TOKEN_MAX_LIFETIME, 15 * 60_000),
    signingThread: signingThread(env.JOBSCOPE_SIGNING_THREAD),
    shutdownTimeoutMs: duration('JOBSCOPE_SHUTDOWN_TIMEOUT', env.JOBSCOPE_SHUTDOWN_TIMEOUT, 30_000),
    redisOutageLogMs: outageLogInterval(env.JOBSCOPE_REDIS_OUTAGE_LOG_INTERVAL),
    lockDurationMs: lockDuration(env.JOBSCOPE_LOCK_DURATION),
    maxStalls: maxStalls(env.JOBSCOPE_MAX_STALLS),
    runawayGraceMs: duration('JOBSCOPE_RUNAWAY_GRACE', env.JOBSCOPE_RUNAWAY_GRACE, 30_000),
    alertWebhook: httpUrl('JOBSCOPE_ALERT_WEBHOOK', env.JOBSCOPE_ALERT_WEBHOOK),
    publicUrl: httpUrl('JOBSCOPE_PUBLIC_URL', env.JOBSCOPE_PUBLIC_URL) ?? `http://127.0.0.1:${parsePort(env.PORT, 3000)}`,
    traceUrl: traceUrl(env.JOBSCOPE_TRACE_URL),
    logLevel,
    stateDir: path.resolve(cwd, env.JOBSCOPE_STATE_DIR || '.jobscope'),
    introspectClients: parseIntrospectClients(env.JOBSCOPE_INTROSPECT_CLIENTS),
    retention: {
      completed: parseKeep('JOBSCOPE_KEEP_COMPLETED', env.JOBSCOPE_KEEP_COMPLETED, { count: 1000, age: 7 * 86_400 }),
      failed: parseKeep('JOBSCOPE_KEEP_FAILED', env.JOBSCOPE_KEEP_FAILED, { count: 5000, age: 30 * 86_400 }),
      logs: keepLogs(env.JOBSCOPE_KEEP_LOGS),
    },
  };
}
