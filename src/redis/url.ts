// REDIS_URL: a server, a Sentinel's master, or a Redis Cluster.
import { ConfigError } from '../errors.ts';
import { redactUrl } from '../redact.ts';

export interface HostPort {
  host: string;
  port: number;
}

export type RedisTarget =
  | { kind: 'single'; url: string }
  | {
      kind: 'sentinel';
      sentinels: HostPort[];
      name: string;
      username?: string;
      password?: string;
      db?: number;
      tls: boolean;
      sentinelPassword?: string;
    }
  | { kind: 'cluster'; nodes: HostPort[]; username?: string; password?: string; tls: boolean };

const MULTI = /^(rediss?)\+(sentinel|cluster):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?]+)(?:\/([^/?]*))?(?:\/(\d+))?(?:\?(.*))?$/;

/**
 * REDIS_URL: `redis://[user:pass@]host:port[/db]` (or rediss://), `redis+sentinel://[user:pass@]h1:26379,h2:26379/<master>[/db]`
 * (`?sentinelPassword=...` when the sentinels need one), or `redis+cluster://[user:pass@]h1:7000,h2:7001` (rediss+... for TLS).
 */
export function parseRedisUrl(url: string): RedisTarget {
  if (/^rediss?:\/\//.test(url)) return { kind: 'single', url };
  const m = MULTI.exec(url);
  if (!m) {
    throw new ConfigError(
      `REDIS_URL: "${redactUrl(url)}" is not redis://host:port, redis+sentinel://host:26379,host:26379/mymaster or redis+cluster://host:7000,host:7001`,
    );
  }
  const [, scheme, kind, user, pass, hostList, path1, db, query] = m;
  const hosts = hostList.split(',').map((h) => {
    const [host, port] = h.trim().split(':');
    const n = Number(port ?? (kind === 'sentinel' ? 26379 : 6379));
    if (!host || !Number.isInteger(n) || n < 1 || n > 65535) throw new ConfigError(`REDIS_URL: "${h}" is not host:port`);
    return { host, port: n };
  });
  const auth = { ...(user ? { username: decodeURIComponent(user) } : {}), ...(pass ? { password: decodeURIComponent(pass) } : {}) };
  const tls = scheme === 'rediss';
  if (kind === 'cluster') return { kind, nodes: hosts, tls, ...auth };
  if (!path1) throw new ConfigError('REDIS_URL: a Sentinel URL names its master: redis+sentinel://host:26379/mymaster');
  const params = new URLSearchParams(query ?? '');
  return {
    kind: 'sentinel',
    sentinels: hosts,
    name: decodeURIComponent(path1),
    tls,
    ...(db ? { db: Number(db) } : {}),
    ...(params.get('sentinelPassword') ? { sentinelPassword: params.get('sentinelPassword')! } : {}),
    ...auth,
  };
}
