// The HTTP server on 127.0.0.1 (a free port) for tests, and a small fetch client that keeps every body it saw so a test can
// check that no token ever left the server. helpers/fixture.ts starts it (`server: true`) with the logins below.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Runtime } from '../../src/runtime/runtime.ts';
import { createApp, listen, type ServerOptions } from '../../src/server/app.ts';

export const ADMIN = { user: 'admin', password: 'admin-secret-pw' };
export const VIEWER = { user: 'viewer', password: 'viewer-secret-pw' };

export function basic(c: { user: string; password: string }): string {
  return `Basic ${Buffer.from(`${c.user}:${c.password}`).toString('base64')}`;
}

/** Anything shaped like a compact JWS. */
export const JWT_LIKE = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\./;

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- test code reads arbitrary JSON shapes
  body: any;
}

export class TestServer {
  readonly server: Server;
  readonly url: string;
  /** Every response body received through `request`. */
  readonly seen: string[] = [];

  private constructor(server: Server) {
    this.server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  static async start(runtime: Runtime, opts: Partial<ServerOptions> = {}): Promise<TestServer> {
    const app = createApp({ ...runtime.serverParts(), logger: runtime.logger, admin: ADMIN, viewer: VIEWER, ...opts });
    return new TestServer(await listen(app, 0, '127.0.0.1'));
  }

  async request(
    path: string,
    opts: {
      method?: string;
      auth?: { user: string; password: string } | string;
      json?: unknown;
      body?: string;
      headers?: Record<string, string>;
    } = {},
  ): Promise<Answer> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.auth) headers.authorization = typeof opts.auth === 'string' ? opts.auth : basic(opts.auth);
    let body = opts.body;
    if (opts.json !== undefined) {
      body = JSON.stringify(opts.json);
      headers['content-type'] = 'application/json';
    } else if (body !== undefined) headers['content-type'] ??= 'application/json';
    const res = await fetch(this.url + path, {
      method: opts.method ?? 'GET',
      headers,
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    this.seen.push(text);
    let parsed: unknown = undefined;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, text, body: parsed };
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
