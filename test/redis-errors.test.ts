// Redis errors as an operator reads them (issue 21): a worker refused by Redis's maxclients says so once, with the limit to
// raise, instead of thousands of `write EPIPE` lines; createClient writes nothing to the application's stderr when Redis is
// unreachable (its calls reject instead). Real redis-server, real `jobscope worker` and Node processes.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { Cluster, JobscopeProcess, sleep } from './helpers/cluster.ts';
import { freePort } from './helpers/redis.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

let cluster: Cluster;

before(async () => {
  cluster = await Cluster.start({
    prefix: 're',
    jobs: Object.fromEntries(
      Array.from({ length: 6 }, (_, i) => [`j${i}.ts`, `export default { token: { audience: ['rec'] }, async run() { return ${i}; } };`]),
    ),
  });
});

after(async () => {
  await cluster?.close();
});

describe('Redis refusals', () => {
  test("a worker over Redis's maxclients names the limit once, and does not flood the log", async () => {
    const admin = new Redis(cluster.redis.url);
    let worker: JobscopeProcess | undefined;
    try {
      const connected = Number(/connected_clients:(\d+)/.exec(await admin.info('clients'))?.[1]);
      // Room for a few connections of the worker, not for one per job.
      await admin.config('SET', 'maxclients', String(connected + 2));
      worker = new JobscopeProcess('refused', 'worker', ['worker'], cluster.processEnv(), cluster.tmp);
      await worker.waitForLog(/maxclients/, 20_000);
      await sleep(6000);
      const named = worker.lines.filter((l) => /maxclients/.test(l.text));
      assert.equal(named.length, 1, worker.tail(40));
      assert.match(named[0].text, /Raise maxclients/);
      const errors = worker.lines.filter((l) => /EPIPE|ECONNRESET|Redis error|worker error/.test(l.text));
      assert.ok(errors.length <= 3, `${errors.length} error lines in 6 s:\n${worker.tail(40)}`);
      assert.ok(
        worker.lines.every((l) => l.json !== undefined || l.text.trim() === ''),
        `a log line is not JSON:\n${worker.tail(40)}`,
      );
    } finally {
      await worker?.kill();
      await admin.config('SET', 'maxclients', '10000').catch(() => undefined);
      admin.disconnect();
    }
  });
});

describe('createClient with Redis unreachable', () => {
  test('writes nothing to stderr; trigger rejects with the connection error', async () => {
    const port = await freePort();
    const script = `
      import { createClient } from './src/client.ts';
      const client = createClient({ redisUrl: 'redis://127.0.0.1:${port}', prefix: 'nobody', jobs: { a: { token: { audience: ['x'] }, async run() {} } } });
      const t = setTimeout(() => { console.log('still waiting'); process.exit(2); }, 20000);
      try { await client.trigger('a'); console.log('resolved'); } catch (err) { console.log('rejected: ' + err.message); }
      clearTimeout(t);
      await client.close();
      process.exit(0);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(stderr, '', `stderr: ${stderr}`);
    assert.equal(code, 0, stdout);
    assert.match(stdout, /rejected: .*(ECONNREFUSED|connect|Redis)/i);
  });
});
