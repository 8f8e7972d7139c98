// Compact JWS signing for run tokens, off the main thread. ECDSA signing is the largest single cost of a run's token scope
// (~30 us of main-thread CPU per token, see notes/BASELINE.md): a signing thread takes it over, and requests made in the
// same tick travel as one message. Tokens are plain RFC 7515 compact JWS; any JWT library verifies them.
import { createHmac, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { SigningKey } from './keys.ts';

export interface Signer {
  /** Signs the claims with the key's alg and kid and header typ at+jwt; resolves to the compact JWS. */
  sign(claims: object): Promise<string>;
  close(): Promise<void>;
}

function signature(alg: string, key: KeyObject, input: string): string {
  return alg === 'ES256'
    ? cryptoSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')
    : createHmac('sha256', key).update(input).digest('base64url');
}

function headerOf(key: SigningKey): string {
  return Buffer.from(JSON.stringify({ alg: key.alg, typ: 'at+jwt', kid: key.kid })).toString('base64url');
}

function signingInput(header: string, claims: object): string {
  return `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
}

/** Signs on the calling thread, synchronously. */
export function signCompact(key: SigningKey, claims: object): string {
  const input = signingInput(headerOf(key), claims);
  return `${input}.${signature(key.alg, key.key, input)}`;
}

// The thread's code, kept self-contained so it runs the same from src/ (tsx) and dist/.
const THREAD = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHmac, sign } = require('node:crypto');
const { alg, key } = workerData;
parentPort.on('message', (inputs) => {
  parentPort.postMessage(inputs.map((input) => alg === 'ES256'
    ? sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')
    : createHmac('sha256', key).update(input).digest('base64url')));
});`;

/** Signs on a dedicated thread; requests made in one tick are batched into one message. Falls back inline if the thread dies. */
export function threadSigner(key: SigningKey): Signer {
  const header = headerOf(key);
  type Pending = { input: string; resolve: (jws: string) => void };
  const inline = (p: Pending) => p.resolve(`${p.input}.${signature(key.alg, key.key, p.input)}`);
  let worker: Worker | undefined = new Worker(THREAD, { eval: true, workerData: { alg: key.alg, key: key.key } });
  worker.unref();
  let queued: Pending[] = [];
  // Batches in flight, answered in order (a thread handles its messages one at a time).
  const inflight: Pending[][] = [];
  let scheduled = false;

  // Whatever the thread has not answered is signed here instead: no run loses its token to a crashed or closed thread.
  const fail = () => {
    worker = undefined;
    for (const batch of inflight.splice(0)) batch.forEach(inline);
  };
  worker.on('message', (signatures: string[]) => {
    const batch = inflight.shift();
    batch?.forEach((p, i) => p.resolve(`${p.input}.${signatures[i]}`));
    // Keep the process alive only while answers are owed.
    if (inflight.length === 0) worker?.unref();
  });
  worker.on('error', fail);
  worker.on('exit', fail);

  const flush = () => {
    scheduled = false;
    const batch = queued;
    queued = [];
    if (!worker) return batch.forEach(inline);
    inflight.push(batch);
    worker.ref();
    worker.postMessage(batch.map((p) => p.input));
  };

  return {
    sign(claims) {
      const input = signingInput(header, claims);
      return new Promise((resolve) => {
        if (!worker) return inline({ input, resolve });
        queued.push({ input, resolve });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
    async close() {
      const w = worker;
      fail();
      if (w) {
        w.removeAllListeners();
        await w.terminate();
      }
    },
  };
}
