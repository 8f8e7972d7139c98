// Signing run tokens through jsonwebtoken, with the KeyObject built once (jsonwebtoken re-parses a PEM string on every call;
// a KeyObject costs it nothing: notes/BASELINE.md). Header { alg, typ: 'at+jwt', kid } (RFC 9068).
//
// An ES256 signature costs ~35-45 us of CPU, as much as everything else a no-op run costs the worker's thread. When runs
// come faster than one at a time, the Signer may hand them to a worker thread (in batches: one message per tick of the
// event loop), so signing runs on a core of its own instead of queueing behind BullMQ on the main thread. A lone run
// (nothing else being signed) is signed inline: a thread hop would only add latency. HS256 (~7 us) is always signed inline.
//
// The thread pays only when it has a core to itself. Measured on 2 cores with Redis on the same host (BENCHMARKS.md, issue
// 18), the thread, the main thread and redis-server take turns on 2 cores: at concurrency 10 inline signing ran ~15% more
// runs per second on ~15% less CPU per run, and at 50 the two were level. So `auto` (JOBSCOPE_SIGNING_THREAD) starts
// it only when the host has a core beside the main thread, and beside Redis when Redis runs here (127.0.0.1, localhost,
// ::1, a socket). One thread is the pool: it signs a token in ~35 us, while the main thread spends more than that on
// each run (BullMQ's share alone is ~45 us), so a second one would wait.
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import jwt from 'jsonwebtoken';
import type { TokenClaims } from '../interfaces.ts';
import type { SigningKey } from './signing-keys.ts';
import type { SigningThread } from '../config.ts';
import { parseRedisUrl } from '../redis/url.ts';

/** Is this Redis URL served on this host (so redis-server takes a core of this host's)? */
function redisOnThisHost(redisUrl: string): boolean {
  const target = parseRedisUrl(redisUrl);
  const hosts =
    target.kind === 'single'
      ? [new URL(target.url).hostname]
      : target.kind === 'sentinel'
        ? target.sentinels.map((s) => s.host)
        : target.nodes.map((n) => n.host);
  return hosts.some((h) => h === '' || h === 'localhost' || h === '[::1]' || h === '::1' || h.startsWith('127.'));
}

/** Whether ES256 signing of overlapping runs goes to a worker thread (see the top of this file). */
export function useSigningThread(setting: SigningThread, redisUrl: string, cores = availableParallelism()): boolean {
  if (setting !== 'auto') return setting === 'on';
  return cores >= (redisOnThisHost(redisUrl) ? 3 : 2);
}

function headerOf(key: SigningKey) {
  return { alg: key.alg, typ: 'at+jwt', kid: key.kid };
}

/** The compact JWS of `claims` (which carry their own iat, nbf and exp). */
export function signToken(key: SigningKey, claims: TokenClaims): string {
  return jwt.sign(claims, key.key, { algorithm: key.alg, header: headerOf(key) });
}

// The thread: the same jsonwebtoken call on the same KeyObject (KeyObjects cross threads by structured clone). Plain
// CommonJS evaluated as is, so it runs the same from src/ (tsx) and dist/.
const THREAD = `
const { parentPort, workerData } = require('node:worker_threads');
const jwt = require(workerData.jsonwebtoken);
const { key, header } = workerData;
parentPort.on('message', (batch) => {
  parentPort.postMessage(batch.map((claims) => {
    try { return jwt.sign(claims, key, { algorithm: header.alg, header }); }
    catch (err) { return { error: String((err && err.message) || err) }; }
  }));
});`;

/** A thread without work for this long ends (it starts again, in ~30 ms, when runs come in bursts again). */
const THREAD_IDLE_MS = 10_000;

interface Waiting {
  resolve(raw: string): void;
  reject(err: Error): void;
}

/** Signs with one key; see the top of this file for when it uses its worker thread. */
export class Signer {
  readonly key: SigningKey;
  private thread: Worker | undefined;
  /** The thread failed to start or died: sign inline from now on. */
  private broken = false;
  /** Batches sent to the thread, answered in order. */
  private readonly sent: Waiting[][] = [];
  private batch: { claims: TokenClaims[]; waiting: Waiting[] } | undefined;
  private idleTimer: NodeJS.Timeout | undefined;

  /** `threaded`: may use the worker thread (useSigningThread); without it every token is signed inline. */
  private readonly threaded: boolean;

  constructor(key: SigningKey, threaded = true) {
    this.key = key;
    this.threaded = threaded;
  }

  /**
   * The token for `claims`: a string when signed inline, a promise when the thread signs it. `busy`: other tokens are
   * being minted right now (the caller knows), so this one may go to the thread.
   */
  sign(claims: TokenClaims, busy: boolean): string | Promise<string> {
    if (!busy || !this.threaded || this.key.alg !== 'ES256' || this.broken) return signToken(this.key, claims);
    return new Promise<string>((resolve, reject) => {
      if (!this.batch) {
        this.batch = { claims: [], waiting: [] };
        process.nextTick(() => this.send());
      }
      this.batch.claims.push(claims);
      this.batch.waiting.push({ resolve, reject });
    });
  }

  private send(): void {
    const batch = this.batch!;
    this.batch = undefined;
    const thread = this.start();
    if (!thread) {
      // No thread: sign them here.
      batch.claims.forEach((c, i) => this.settle(batch.waiting[i], signToken(this.key, c)));
      return;
    }
    this.sent.push(batch.waiting);
    thread.ref();
    thread.postMessage(batch.claims);
  }

  private settle(w: Waiting, answer: string | { error: string }): void {
    if (typeof answer === 'string') w.resolve(answer);
    else w.reject(new Error(`signing failed: ${answer.error}`));
  }

  private start(): Worker | undefined {
    if (this.thread || this.broken) return this.thread;
    try {
      const thread = new Worker(THREAD, {
        eval: true,
        execArgv: [],
        workerData: { key: this.key.key, header: headerOf(this.key), jsonwebtoken: createRequire(import.meta.url).resolve('jsonwebtoken') },
      });
      thread.on('message', (answers: (string | { error: string })[]) => {
        const waiting = this.sent.shift() ?? [];
        waiting.forEach((w, i) => this.settle(w, answers[i]));
        if (this.sent.length === 0) this.idle(thread);
      });
      const fail = (err: Error) => {
        this.broken = true;
        this.thread = undefined;
        for (const waiting of this.sent.splice(0)) for (const w of waiting) w.reject(err);
      };
      thread.on('error', fail);
      thread.on('exit', (code) => fail(new Error(`the signing thread exited (${code})`)));
      thread.unref();
      this.thread = thread;
    } catch {
      this.broken = true;
    }
    return this.thread;
  }

  /** With nothing left to sign, the thread stops keeping the process alive, and ends after a while without work. */
  private idle(thread: Worker): void {
    thread.unref();
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.thread !== thread || this.sent.length || this.batch) return;
      this.thread = undefined;
      thread.removeAllListeners('exit');
      void thread.terminate();
    }, THREAD_IDLE_MS);
    this.idleTimer.unref();
  }

  /** Stops the thread (tokens asked for from here on are signed inline). */
  async close(): Promise<void> {
    const thread = this.thread;
    this.broken = true;
    this.thread = undefined;
    clearTimeout(this.idleTimer);
    await thread?.terminate();
  }
}
