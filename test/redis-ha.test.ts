// Redis for production, for real: a 3-master Redis Cluster and a Sentinel-monitored master with a replica, all started by
// the test on 127.0.0.1. On the cluster, runs, overlap, tokens and the live-token list work (every key shares the prefix's
// hash tag). With Sentinel, the master is killed while runs are going: the replica is promoted, the runner follows it,
// and no run is lost.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { jobscopeFixture, until } from './helpers/fixture.ts';
import { freePort } from './helpers/redis.ts';

const children: ChildProcess[] = [];
const dirs: string[] = [];

function server(args: string[], dir: string): ChildProcess {
  const child = spawn('redis-server', [...args, '--dir', dir, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  children.push(child);
  return child;
}

async function answers(port: number): Promise<void> {
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await until(
      async () => {
        try {
          if (client.status !== 'ready') await client.connect();
          return (await client.ping()) === 'PONG';
        } catch {
          client.disconnect();
          return false;
        }
      },
      10_000,
      `redis on ${port}`,
    );
  } finally {
    client.disconnect();
  }
}

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const JOBS = {
  'work.ts': `export default { token: { audience: ['svc'] }, concurrency: 2,
    async run(ctx) { await new Promise((r) => setTimeout(r, 150)); return { n: ctx.data.n, jti: ctx.token.claims.jti }; } };`,
  'single.ts': `export default { token: { audience: ['svc'] }, overlap: 'skip',
    async run(ctx) { await new Promise((r) => setTimeout(r, 1500)); return 'done'; } };`,
};

describe('Redis Cluster (3 masters)', () => {
  test('runs, overlap, live tokens and cancel work on a cluster', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'jobscope-cluster-'));
    dirs.push(dir);
    const ports = [await freePort(), await freePort(), await freePort()];
    for (const p of ports) {
      server(
        ['--port', String(p), '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${p}.conf`, '--cluster-node-timeout', '2000'],
        dir,
      );
    }
    for (const p of ports) await answers(p);
    execFileSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], {
      stdio: 'ignore',
      timeout: 30_000,
    });
    const probe = new Redis({ port: ports[0], host: '127.0.0.1' });
    await until(async () => (await probe.cluster('INFO')).includes('cluster_state:ok'), 15_000, 'cluster_state:ok');
    probe.disconnect();

    const fx = await jobscopeFixture({
      jobs: JOBS,
      redisUrl: `redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}`,
      env: {},
      server: true,
    });
    try {
      assert.equal(fx.runtime.config.prefix, '{jobscope}', 'the default prefix on a cluster is a hash tag');
      await fx.runtime.startWorkers();
      const runs = await Promise.all([1, 2, 3, 4].map((n) => fx.trigger('work', { n })));
      for (const runId of runs) assert.equal((await fx.wait(runId)).outcome, 'completed');
      const first = { runId: await fx.trigger('single') };
      await until(async () => (await fx.api.tokens()).some((t) => t.run === first.runId), 5000, 'its live token in the list');
      await assert.rejects(fx.trigger('single'), (err: Error & { blocking?: string }) => err.blocking === first.runId);
      await fx.client.cancel(first.runId, 'test');
      assert.equal((await fx.wait(first.runId)).outcome, 'cancelled');
      assert.deepEqual(await fx.api.tokens(), []);
    } finally {
      await fx.close();
    }
  });
});

describe('Redis Sentinel', () => {
  test('the master dies while runs are going: the replica is promoted, the runner follows it, no run is lost', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'jobscope-sentinel-'));
    dirs.push(dir);
    const [masterPort, replicaPort, sentinelPort] = [await freePort(), await freePort(), await freePort()];
    const master = server(['--port', String(masterPort)], dir);
    server(['--port', String(replicaPort), '--replicaof', '127.0.0.1', String(masterPort)], mkdtempSync(path.join(dir, 'r-')));
    const conf = path.join(dir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `port ${sentinelPort}`,
        'bind 127.0.0.1',
        `sentinel monitor mymaster 127.0.0.1 ${masterPort} 1`,
        'sentinel down-after-milliseconds mymaster 1000',
        'sentinel failover-timeout mymaster 3000',
        '',
      ].join('\n'),
    );
    children.push(spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' }));
    for (const p of [masterPort, replicaPort, sentinelPort]) await answers(p);
    const direct = new Redis({ port: masterPort, host: '127.0.0.1' });
    await until(async () => (await direct.info('replication')).includes('connected_slaves:1'), 10_000, 'the replica');
    await until(
      async () => {
        const s = new Redis({ port: sentinelPort, host: '127.0.0.1' });
        s.on('error', () => {});
        try {
          return ((await s.call('SENTINEL', 'REPLICAS', 'mymaster')) as unknown[]).length === 1;
        } finally {
          s.disconnect();
        }
      },
      // A sentinel learns of replicas from the master's INFO, which it reads every 10 s.
      25_000,
      'the sentinel to know the replica',
    );

    const fx = await jobscopeFixture({
      jobs: JOBS,
      redisUrl: `redis+sentinel://127.0.0.1:${sentinelPort}/mymaster`,
      env: { JOBSCOPE_PREFIX: 'ha', JOBSCOPE_LOCK_DURATION: '2s' },
      server: true,
    });
    try {
      const runs = await Promise.all(Array.from({ length: 20 }, (_, n) => fx.trigger('work', { n })));
      // What was added is on the replica before the master dies (replication is asynchronous).
      assert.equal(await direct.call('WAIT', '1', '5000'), 1, 'the replica has every run');
      direct.disconnect();
      await fx.runtime.startWorkers();
      await until(async () => (await fx.api.job('work')).counts.completed >= 4, 10_000, 'some runs done');
      master.kill('SIGKILL');
      const reports = [];
      for (const runId of runs) reports.push(await fx.wait(runId, 45_000));
      assert.deepEqual(
        reports.map((r) => r.outcome),
        Array(20).fill('completed'),
        'every run completed',
      );
      assert.deepEqual(
        reports.map((r) => (r.result as { n: number }).n),
        Array.from({ length: 20 }, (_, n) => n),
      );
      const promoted = new Redis({ port: replicaPort, host: '127.0.0.1' });
      assert.match(await promoted.info('replication'), /role:master/, 'the replica was promoted');
      promoted.disconnect();
    } finally {
      await fx.close();
    }
  });
});
