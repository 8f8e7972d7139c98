// Several real `jobscope` processes (worker, server, start) on one private redis-server, and a real HTTP "timeline" service
// that the jobs call through ctx.service('rec'). The timeline records when each execution of a run starts and ends (and any
// tick in between), which process sent it, and whether the verifier accepted the token the request carried, so a test can
// check cluster-wide guarantees from the outside: how many runs were really executing at once, which worker ran what, and
// whether a stale execution's token was refused.
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import {
  closeVerifiers,
  createJobTokenVerifier,
  extractToken,
  TokenRejectedError,
  type JobTokenVerifier,
  type VerifyOptions,
} from '../../src/token/verify.ts';
import { BIN } from './cli.ts';
import { startRedis, type TestRedis } from './redis.ts';
import { jobsDir, removeDir } from './runtime.ts';

export const ADMIN = { user: 'admin', password: 'cluster-secret-pw' };
const BASIC = `Basic ${Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64')}`;

/** How long a spawned process may take to say it is ready, and to exit after SIGKILL. */
const READY_TIMEOUT_MS = 30_000;
const KILL_TIMEOUT_MS = 5_000;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns something truthy (bounded in time); returns that value. */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs: number, what: string, everyMs = 25): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The timeline service

export type EventKind = 'start' | 'end' | 'tick';

export interface TimelineEvent {
  /** Arrival order at the service (the order requests reached it, which is what "at once" is measured on). */
  seq: number;
  /** Date.now() at arrival. */
  at: number;
  kind: EventKind;
  run: string;
  attempt: number;
  trigger: string | undefined;
  /** process.pid of the worker that executed the handler. */
  pid: number;
  /** The Bearer token the request carried (kept in the test process only, to present it again later). */
  token: string | undefined;
  jti: string | undefined;
  /** undefined while the verifier is still deciding. */
  accepted: boolean | undefined;
  /** The verifier's rejection code ('revoked', 'expired', ...) when refused. */
  code: string | undefined;
}

/** A start with its matching end (same run, attempt and worker pid); `end` is undefined if it never came. */
export interface Execution {
  run: string;
  attempt: number;
  pid: number;
  start: TimelineEvent;
  end: TimelineEvent | undefined;
}

function jtiOf(token: string | undefined): string | undefined {
  try {
    const claims = JSON.parse(Buffer.from((token ?? '').split('.')[1] ?? '', 'base64url').toString('utf8')) as { jti?: unknown };
    return typeof claims.jti === 'string' ? claims.jti : undefined;
  } catch {
    return undefined;
  }
}

export class Timeline {
  readonly events: TimelineEvent[] = [];
  url = '';
  private server: http.Server | undefined;
  /** One verifier (one Redis connection, built once) for every request, as a real service would hold. */
  private readonly verifier: JobTokenVerifier;
  private readonly pending = new Set<Promise<void>>();
  private seq = 0;

  constructor(verifyOptions: VerifyOptions) {
    this.verifier = createJobTokenVerifier(verifyOptions);
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const at = Date.now();
      const seq = ++this.seq;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const kind = (req.url ?? '').replace(/^\/+/, '').split('?')[0] as EventKind;
        let body: { run?: unknown; attempt?: unknown; pid?: unknown; trigger?: unknown } = {};
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as typeof body;
        } catch {
          body = {};
        }
        let token: string | undefined;
        let tokenError: unknown;
        try {
          token = extractToken({ headers: req.headers, rawHeaders: req.rawHeaders, url: req.url });
        } catch (err) {
          tokenError = err;
        }
        const event: TimelineEvent = {
          seq,
          at,
          kind,
          run: String(body.run),
          attempt: Number(body.attempt),
          trigger: typeof body.trigger === 'string' ? body.trigger : undefined,
          pid: Number(body.pid),
          token,
          jti: jtiOf(token),
          accepted: undefined,
          code: undefined,
        };
        // Keep arrival order even though bodies finish arriving in any order.
        const i = this.events.findIndex((e) => e.seq > seq);
        if (i < 0) this.events.push(event);
        else this.events.splice(i, 0, event);
        const verified = (token === undefined ? Promise.reject(tokenError) : this.verifier.verify(token)).then(
          () => {
            event.accepted = true;
            res.setHeader('content-type', 'application/json');
            res.end(JSON.stringify({ ok: true }));
          },
          (err: unknown) => {
            const e = err instanceof TokenRejectedError ? err : new TokenRejectedError('unavailable', String(err));
            event.accepted = false;
            event.code = e.code;
            res.statusCode = e.status;
            res.setHeader('content-type', 'application/json');
            res.end(JSON.stringify({ error: e.code, message: e.message }));
          },
        );
        const p = verified.finally(() => this.pending.delete(p));
        this.pending.add(p);
      });
    });
    // A harness that never drops a job's post on its own account, however loaded the machine: an idle keep-alive
    // connection is never closed by the server (a worker could send its next request on it just as the server closed it:
    // a POST that got does not retry, and the event would be lost), and the accept queue is the system's largest (the
    // default 511 can fill while 20 processes connect at once to a test process busy elsewhere). stop() closes them all.
    this.server.keepAliveTimeout = 0;
    await new Promise<void>((resolve) => this.server!.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Resolves when every request received so far has its verdict. */
  async settled(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
  }

  /** Presents a token to the same verifier the service uses: `{ accepted, code }`. */
  async verify(token: string): Promise<{ accepted: boolean; code: string | undefined }> {
    try {
      await this.verifier.verify(token);
      return { accepted: true, code: undefined };
    } catch (err) {
      return { accepted: false, code: err instanceof TokenRejectedError ? err.code : String(err) };
    }
  }

  of(filter: { run?: string; kind?: EventKind; pid?: number; attempt?: number }): TimelineEvent[] {
    return this.events.filter(
      (e) =>
        (filter.run === undefined || e.run === filter.run) &&
        (filter.kind === undefined || e.kind === filter.kind) &&
        (filter.pid === undefined || e.pid === filter.pid) &&
        (filter.attempt === undefined || e.attempt === filter.attempt),
    );
  }

  /** Starts paired with ends (same run, attempt and pid, in arrival order). */
  executions(filter: (e: TimelineEvent) => boolean = () => true): Execution[] {
    const out: Execution[] = [];
    const open = new Map<string, Execution[]>();
    for (const e of this.events.filter(filter)) {
      const key = `${e.run}|${e.attempt}|${e.pid}`;
      if (e.kind === 'start') {
        const x: Execution = { run: e.run, attempt: e.attempt, pid: e.pid, start: e, end: undefined };
        out.push(x);
        open.set(key, [...(open.get(key) ?? []), x]);
      } else if (e.kind === 'end') {
        const list = open.get(key);
        const x = list?.shift();
        if (x) x.end = e;
      }
    }
    return out;
  }

  /**
   * The largest number of executions between their start and their end at any moment, in arrival order. An execution whose
   * end never arrived counts as running until the end of the timeline (it may well still be running).
   */
  maxConcurrent(filter: (e: TimelineEvent) => boolean = () => true): number {
    const xs = this.executions(filter);
    const points: { seq: number; delta: number }[] = [];
    for (const x of xs) {
      points.push({ seq: x.start.seq, delta: 1 });
      if (x.end) points.push({ seq: x.end.seq, delta: -1 });
    }
    points.sort((a, b) => a.seq - b.seq);
    let now = 0;
    let max = 0;
    for (const p of points) {
      now += p.delta;
      max = Math.max(max, now);
    }
    return max;
  }

  /** A short readable dump for assertion messages. */
  describe(filter: (e: TimelineEvent) => boolean = () => true): string {
    const events = this.events.filter(filter);
    const t0 = events[0]?.at ?? 0;
    return events
      .map(
        (e) =>
          `+${String(e.at - t0).padStart(6)}ms #${e.seq} ${e.kind.padEnd(5)} ${e.run} att=${e.attempt} trig=${e.trigger} pid=${e.pid} ` +
          `${e.accepted === undefined ? 'pending' : e.accepted ? 'accepted' : `refused:${e.code}`}`,
      )
      .join('\n');
  }

  async stop(): Promise<void> {
    await this.settled().catch(() => undefined);
    await this.verifier.close();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/**
 * Source of `_timeline.ts`, a helper file in the jobs folder (files starting with '_' are not jobs). Job files import it:
 *   import { post, sleep, ticking } from './_timeline.ts';
 * `post(ctx, kind)` tells the timeline service about this execution; `sleep(ctx, ms)` honours ctx.signal; `ticking(ctx, ms)`
 * posts a tick every 300 ms for `ms`, ignoring refusals (so only ctx.signal stops it early: a refused token does not).
 */
export const TIMELINE_JOB_HELPER = `
export function post(ctx, kind) {
  return ctx.service('rec').post(kind, {
    json: { run: ctx.run.id, attempt: ctx.run.attempt, trigger: ctx.run.trigger, pid: process.pid },
  }).json();
}
export function sleep(ctx, ms) {
  return new Promise((resolve, reject) => {
    if (ctx.signal.aborted) return reject(ctx.signal.reason);
    const t = setTimeout(resolve, ms);
    ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); }, { once: true });
  });
}
export async function ticking(ctx, ms, everyMs = 300) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    await post(ctx, 'tick').catch(() => undefined);
    await sleep(ctx, everyMs);
  }
}
`;

/** A job file body: posts start, waits `ms` (honouring ctx.signal), posts end. `extra` adds definition fields. */
export function timedJob(ms: number, extra = ''): string {
  return `import { post, sleep } from './_timeline.ts';
export default {
  token: { audience: ['rec'] },
  ${extra}
  async run(ctx) {
    await post(ctx, 'start');
    await sleep(ctx, ${ms});
    await post(ctx, 'end');
    return { ran: ctx.run.id, pid: process.pid };
  },
};
`;
}

// ---------------------------------------------------------------------------------------------------------------------
// jobscope processes

export type Mode = 'worker' | 'server' | 'start';

export interface LogLine {
  /** Date.now() in the test process when the line was read. */
  receivedAt: number;
  text: string;
  json: Record<string, unknown> | undefined;
}

export class JobscopeProcess {
  readonly name: string;
  readonly mode: Mode;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout = '';
  stderr = '';
  readonly lines: LogLine[] = [];
  /** Base URL of the HTTP server (server and start). */
  url = '';
  exitCode: number | null | undefined = undefined;
  private partial = '';

  constructor(name: string, mode: Mode, args: string[], env: NodeJS.ProcessEnv, cwd: string) {
    this.name = name;
    this.mode = mode;
    this.child = spawn(process.execPath, [BIN, ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d));
    this.child.stderr!.on('data', (d: Buffer) => {
      const text = d.toString('utf8');
      this.stderr += text;
      const parts = (this.partial + text).split('\n');
      this.partial = parts.pop() ?? '';
      const receivedAt = Date.now();
      for (const line of parts) {
        let json: Record<string, unknown> | undefined;
        try {
          json = JSON.parse(line) as Record<string, unknown>;
        } catch {
          json = undefined;
        }
        this.lines.push({ receivedAt, text: line, json });
      }
    });
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        this.exitCode = code;
        resolve({ code, signal });
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The first log line (on stderr) matching `re`; waits for it up to `timeoutMs`; fails early if the process exits. */
  async waitForLog(re: RegExp, timeoutMs = 10_000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find((l) => re.test(l.text));
      if (found) return found;
      if (!this.running) {
        await sleep(50); // let the last output arrive
        const late = this.lines.find((l) => re.test(l.text));
        if (late) return late;
        throw new Error(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode}) before logging ${re}\n${this.tail()}`);
      }
      if (Date.now() > deadline) throw new Error(`${this.name}: no log line matching ${re} within ${timeoutMs} ms\n${this.tail()}`);
      await sleep(20);
    }
  }

  /** Log lines whose msg matches `re`. */
  logs(re: RegExp): LogLine[] {
    return this.lines.filter((l) => re.test(String(l.json?.msg ?? l.text)));
  }

  signal(sig: NodeJS.Signals): void {
    if (this.running) this.child.kill(sig);
  }

  /** Resolves with the exit code, or throws if the process has not exited within `timeoutMs`. */
  async waitExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${this.name} did not exit within ${timeoutMs} ms\n${this.tail()}`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM (after SIGCONT, in case it is stopped), then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.running) return this.exited;
    this.signal('SIGCONT');
    this.signal('SIGTERM');
    try {
      return await this.waitExit(graceMs);
    } catch {
      return this.kill();
    }
  }

  async kill(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) this.child.kill('SIGKILL');
    return this.waitExit(KILL_TIMEOUT_MS);
  }

  tail(lines = 30): string {
    return `--- ${this.name} (pid ${this.child.pid}) stderr tail ---\n${this.stderr.split('\n').slice(-lines).join('\n')}`;
  }
}

export interface Answer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- test code reads arbitrary JSON shapes
  body: any;
  text: string;
}

// ---------------------------------------------------------------------------------------------------------------------
// The watchdog

// When the test process dies without running its after() hooks (the test runner SIGKILLs it, e.g. when its own stdout is
// closed), its children would live on. A small separate process holds the other end of a pipe: when that pipe closes
// without a "stop", it SIGKILLs every pid it was told about and removes the folders.
const WATCHDOG = `
const { rmSync } = require('node:fs');
const pids = new Set();
const dirs = new Set();
let stopped = false;
let buf = '';
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => {});
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i);
    const sp = line.indexOf(' ');
    const cmd = sp < 0 ? line : line.slice(0, sp);
    const arg = sp < 0 ? '' : line.slice(sp + 1);
    buf = buf.slice(i + 1);
    if (cmd === 'kill') pids.add(Number(arg));
    else if (cmd === 'forget') pids.delete(Number(arg));
    else if (cmd === 'rm') dirs.add(arg);
    else if (cmd === 'stop') stopped = true;
  }
});
process.stdin.on('end', () => {
  if (!stopped) {
    for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch {} }
    for (const dir of dirs) { try { rmSync(dir, { recursive: true, force: true }); } catch {} }
  }
  process.exit(0);
});
`;

class Watchdog {
  private readonly child: ChildProcess;
  constructor() {
    this.child = spawn(process.execPath, ['-e', WATCHDOG], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    this.child.stdin!.on('error', () => undefined);
    // Never what keeps the test process alive.
    this.child.unref();
    (this.child.stdin as unknown as { unref?: () => void }).unref?.();
  }
  private send(line: string): void {
    if (this.child.stdin!.writable) this.child.stdin!.write(`${line}\n`);
  }
  kills(pid: number): void {
    this.send(`kill ${pid}`);
  }
  forget(pid: number): void {
    this.send(`forget ${pid}`);
  }
  removes(...dirs: string[]): void {
    for (const d of dirs) this.send(`rm ${d}`);
  }
  /** Everything was cleaned up normally: the watchdog exits without touching anything. */
  stop(): void {
    this.send('stop');
    this.child.stdin!.end();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The cluster

export interface ClusterOptions {
  /** Job files (name -> source); `_timeline.ts` is added. */
  jobs: Record<string, string>;
  prefix: string;
  /** Environment for every process, on top of the fixture's. */
  env?: Record<string, string>;
  /** More redis-server arguments (e.g. `--appendonly yes` so that data outlives a stop and start, `--maxclients 30000` for a fleet). */
  redisArgs?: string[];
}

export class Cluster {
  redis!: TestRedis;
  timeline!: Timeline;
  readonly prefix: string;
  readonly jobsDir: string;
  readonly tmp: string;
  readonly keyFile: string;
  readonly publicKeyPem: string;
  readonly processes: JobscopeProcess[] = [];
  private readonly env: Record<string, string>;
  private readonly redisArgs: string[];
  private count = 0;
  private readonly watchdog = new Watchdog();

  private constructor(opts: ClusterOptions) {
    this.prefix = opts.prefix;
    this.env = opts.env ?? {};
    this.redisArgs = opts.redisArgs ?? [];
    this.jobsDir = jobsDir({ '_timeline.ts': TIMELINE_JOB_HELPER, ...opts.jobs });
    this.tmp = mkdtempSync(path.join(os.tmpdir(), 'jobscope-cluster-'));
    // One signing key for every process, so any of them verifies any run's token the same way.
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.keyFile = path.join(this.tmp, 'signing.pem');
    writeFileSync(this.keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    this.publicKeyPem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
    mkdirSync(path.join(this.tmp, 'state'));
  }

  static async start(opts: ClusterOptions): Promise<Cluster> {
    const cluster = new Cluster(opts);
    cluster.watchdog.removes(cluster.jobsDir, cluster.tmp);
    try {
      cluster.redis = await startRedis(cluster.redisArgs);
      const redisPid = cluster.redis.pid;
      if (redisPid) cluster.watchdog.kills(redisPid);
      cluster.timeline = await new Timeline({
        audience: 'rec',
        publicKey: cluster.publicKeyPem,
        redis: cluster.redis.url,
        prefix: cluster.prefix,
      }).start();
    } catch (err) {
      await cluster.close();
      throw err;
    }
    return cluster;
  }

  /** The whole environment of a spawned process: nothing is inherited but PATH and HOME. */
  processEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? os.tmpdir(),
      REDIS_URL: this.redis.url,
      JOBSCOPE_JOBS: this.jobsDir,
      JOBSCOPE_PREFIX: this.prefix,
      JOBSCOPE_SERVICES: `rec=${this.timeline.url}`,
      JOBSCOPE_SIGNING_KEY_FILE: this.keyFile,
      JOBSCOPE_STATE_DIR: path.join(this.tmp, 'state'),
      JOBSCOPE_USER: ADMIN.user,
      JOBSCOPE_PASSWORD: ADMIN.password,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      JOBSCOPE_SHUTDOWN_TIMEOUT: '5s',
      ...this.env,
      ...extra,
    };
  }

  /** Starts `jobscope <mode>` and resolves once it is ready ('workers started' / 'dashboard at'). */
  async spawn(
    mode: Mode,
    opts: { env?: Record<string, string>; args?: string[]; name?: string; readyTimeoutMs?: number } = {},
  ): Promise<JobscopeProcess> {
    const name = opts.name ?? `${mode}-${++this.count}`;
    const proc = new JobscopeProcess(name, mode, [mode, ...(opts.args ?? [])], this.processEnv(opts.env), this.tmp);
    this.processes.push(proc);
    this.watchdog.kills(proc.pid);
    void proc.exited.then(() => this.watchdog.forget(proc.pid));
    if (mode === 'worker') {
      await proc.waitForLog(/"msg":"workers started"/, opts.readyTimeoutMs ?? READY_TIMEOUT_MS);
    } else {
      const line = await proc.waitForLog(/"msg":"dashboard at /, opts.readyTimeoutMs ?? READY_TIMEOUT_MS);
      proc.url = String(line.json?.url ?? '');
      if (!proc.url) throw new Error(`${name}: no url in ${line.text}`);
    }
    return proc;
  }

  /** Restarts the cluster's Redis (after redis.stop()); the watchdog kills the new server too if the test process dies. */
  async restartRedis(): Promise<void> {
    await this.redis.start();
    if (this.redis.pid) this.watchdog.kills(this.redis.pid);
  }

  /** Rewrites (or adds) a job file; processes started afterwards load the new version. */
  writeJob(file: string, source: string): void {
    writeFileSync(path.join(this.jobsDir, file), source);
  }

  /** A JSON request to a server process with the admin login (bounded in time). */
  async api(proc: JobscopeProcess, urlPath: string, opts: { method?: string; json?: unknown } = {}): Promise<Answer> {
    const headers: Record<string, string> = { authorization: BASIC };
    let body: string | undefined;
    if (opts.json !== undefined) {
      body = JSON.stringify(opts.json);
      headers['content-type'] = 'application/json';
    }
    const res = await fetch(proc.url + urlPath, {
      method: opts.method ?? (body === undefined ? 'GET' : 'POST'),
      headers,
      body,
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text };
  }

  /** POST /api/jobs/<job>/runs. */
  trigger(server: JobscopeProcess, job: string, data: Record<string, unknown> = {}): Promise<Answer> {
    return this.api(server, `/api/jobs/${encodeURIComponent(job)}/runs`, { json: { data } });
  }

  /** GET /api/runs/<runId> (the run report). */
  async run(server: JobscopeProcess, runId: string): Promise<Answer> {
    return this.api(server, `/api/runs/${encodeURIComponent(runId)}`);
  }

  /** Polls the run report until its state is completed or failed (bounded). */
  async finished(server: JobscopeProcess, runId: string, timeoutMs = 20_000): Promise<Answer['body']> {
    return waitFor(
      async () => {
        const r = await this.run(server, runId);
        return r.status === 200 && (r.body.state === 'completed' || r.body.state === 'failed') ? r.body : undefined;
      },
      timeoutMs,
      `run ${runId} to finish`,
      100,
    );
  }

  /** Live token keys in Redis (`<prefix>:token:*`), over a fresh connection. */
  async liveTokenKeys(): Promise<string[]> {
    const client = new Redis(this.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await client.connect();
      return await client.keys(`${this.prefix}:token:*`);
    } finally {
      client.disconnect();
    }
  }

  /** All processes' stderr tails, for failure messages. */
  tails(lines = 15): string {
    return this.processes.map((p) => p.tail(lines)).join('\n');
  }

  /** Kills every process still running (SIGKILL, bounded), then stops the timeline and Redis and removes the files. */
  async close(): Promise<void> {
    await Promise.all(this.processes.map((p) => p.kill().catch(() => undefined)));
    await this.timeline?.stop().catch(() => undefined);
    await closeVerifiers();
    await this.redis?.destroy().catch(() => undefined);
    removeDir(this.jobsDir);
    rmSync(this.tmp, { recursive: true, force: true });
    this.watchdog.stop();
  }
}
