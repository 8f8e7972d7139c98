// The embedded default Redis that `jobscope start` launches when none is configured and none answers.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Redis } from 'ioredis';
import { isListening, startEmbeddedRedis } from '../src/runtime/redis.ts';
import { freePort } from './helpers/redis.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'jobscope-embedded-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('starts a private redis-server with its data in the state folder, and stops it', async () => {
  const port = await freePort();
  const embedded = await startEmbeddedRedis(path.join(dir, 'redis'), port);
  try {
    assert.equal(embedded.url, `redis://127.0.0.1:${port}`);
    const client = new Redis(embedded.url);
    await client.set('k', 'v');
    assert.equal(await client.get('k'), 'v');
    assert.deepEqual(await client.config('GET', 'appendonly'), ['appendonly', 'yes']);
    client.disconnect();
    assert.ok(existsSync(path.join(dir, 'redis', 'redis.log')));
  } finally {
    await embedded.stop();
  }
  assert.equal(await isListening('127.0.0.1', port), false);
});

test('without redis-server installed, the error names the fixes', async () => {
  const saved = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    await assert.rejects(startEmbeddedRedis(path.join(dir, 'none'), await freePort()), (err: Error) => {
      assert.match(err.message, /redis-server is not installed/);
      assert.match(err.message, /install redis-server/);
      assert.match(err.message, /docker compose up -d redis/);
      return true;
    });
  } finally {
    process.env.PATH = saved;
  }
});
