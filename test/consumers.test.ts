// Message consumers in token scopes, for real: the RabbitMQ broker on 127.0.0.1:5672 (uniquely named, auto-deleted queues
// and exchanges on the default vhost, deleted at the end) and a real Redis, calling a service that checks every token with
// the unchanged @jobscope/verify. Also a consumer of the application's own BullMQ queue.
import assert from 'node:assert/strict';
import { createPublicKey, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, type ChannelModel, type Channel, type ConsumeMessage } from 'amqplib';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { consumeWithScope, createScopes, scopedProcessor, type AmqpChannel, type Scopes } from '../src/index.ts';
import { generateEcPem } from '../src/token/signing-keys.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { VerifyingService } from './helpers/service.ts';
import { until } from './helpers/wait.ts';

const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const prefix = 'cons';
const tag = randomUUID().slice(0, 8);
let redis: TestRedis;
let client: Redis;
let dir: string;
let scopes: Scopes;
let orders: VerifyingService;
let amqp: ChannelModel;
let channel: Channel;

const tokenKey = (jti: string) => `${prefix}:token:${jti}`;
const liveTokens = () => client.keys(`${prefix}:token:*`);

before(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  dir = mkdtempSync(path.join(os.tmpdir(), 'jobscope-consumers-'));
  const pem = generateEcPem();
  writeFileSync(path.join(dir, 'signing.pem'), pem);
  orders = await new VerifyingService({ audience: 'orders', publicKey: createPublicKey(pem), redis: redis.url, prefix }).start();
  scopes = createScopes({ redisUrl: redis.url, prefix, signingKeyFile: path.join(dir, 'signing.pem'), services: { orders: orders.url } });
  amqp = await connect(AMQP_URL);
  channel = await amqp.createChannel();
});

after(async () => {
  await channel?.close().catch(() => undefined);
  await amqp?.close().catch(() => undefined);
  await scopes.close();
  await orders.stop();
  client.disconnect();
  await redis.destroy();
  rmSync(dir, { recursive: true, force: true });
});

describe('RabbitMQ: consumeWithScope', () => {
  test('200 messages, each with its own token; failures nacked (requeue, dead-letter); settled only after fn and revocation', async () => {
    const queue = `jobscope-test-${tag}-orders`;
    const dlx = `jobscope-test-${tag}-dlx`;
    const dead = `jobscope-test-${tag}-dead`;
    await channel.assertExchange(dlx, 'fanout', { autoDelete: true, durable: false });
    // x-expires: should this test die before its cleanup, the broker drops the queue a minute after its last use.
    await channel.assertQueue(dead, { autoDelete: false, durable: false, expires: 60_000 });
    await channel.bindQueue(dead, dlx, '');
    await channel.assertQueue(queue, { autoDelete: true, durable: false, deadLetterExchange: dlx, expires: 60_000 });
    try {
      const finished = new Map<string, number>(); // message id -> when its fn finished
      const jtiOf = new Map<string, string[]>(); // message id -> the jti of each delivery
      const atAck: { id: string; fnDone: boolean; live: Promise<number> }[] = [];
      const nacked: { id: string; requeue: boolean; live: Promise<number> }[] = [];
      // Watch what the adapter does on the channel: an ack must come after the message's fn, and after its token is dead.
      const jtiOfMsg = (m: ConsumeMessage) => jtiOf.get(String(m.properties.messageId))!.at(-1)!;
      const watched: AmqpChannel<ConsumeMessage> = {
        consume: (q, onMessage, opts) => channel.consume(q, onMessage, opts),
        cancel: (consumerTag) => channel.cancel(consumerTag),
        ack: (m) => {
          const id = String(m.properties.messageId);
          atAck.push({ id, fnDone: finished.has(id), live: client.exists(tokenKey(jtiOfMsg(m))) });
          channel.ack(m);
        },
        nack: (m, allUpTo, requeue) => {
          const id = String(m.properties.messageId);
          nacked.push({ id, requeue: requeue === true, live: client.exists(tokenKey(jtiOfMsg(m))) });
          channel.nack(m, allUpTo, requeue);
        },
      };
      await channel.prefetch(20);
      orders.calls = [];
      orders.delayMs = 5;
      const consumer = await consumeWithScope(
        watched,
        queue,
        scopes,
        {
          subject: 'consumer:orders',
          audience: ['orders'],
          scope: ['orders:write'],
          // A failed message goes back to the queue once; failing again, to the dead-letter exchange.
          onFailure: (_err, msg) => (msg.fields.redelivered ? 'dead-letter' : 'requeue'),
        },
        async (msg, ctx) => {
          const id = String(msg.properties.messageId);
          jtiOf.set(id, [...(jtiOf.get(id) ?? []), ctx.token.claims.jti]);
          const { n } = JSON.parse(msg.content.toString()) as { n: number };
          const answer = await ctx
            .service('orders')
            .post(`orders/${n}`, { headers: { 'x-msg': id } })
            .json<{ id: string }>();
          assert.equal(answer.id, id);
          if (n === 13 || (n === 77 && !msg.fields.redelivered)) throw new Error(`message ${n} failed`);
          await new Promise((r) => setTimeout(r, n % 3));
          finished.set(id, Date.now());
        },
      );
      for (let n = 0; n < 200; n++) {
        channel.sendToQueue(queue, Buffer.from(JSON.stringify({ n })), { messageId: `order-${n}` });
      }
      await until(() => atAck.length === 199 && nacked.length === 3, 60_000, '199 acks and 3 nacks');
      await consumer.cancel();

      // Each call carried the token of its own message: subject, id claim, audience, live at the service.
      assert.equal(orders.calls.length, 202);
      for (const call of orders.calls) {
        assert.equal(call.status, 200, String(call.error));
        assert.equal(call.claims?.sub, 'consumer:orders');
        assert.equal(call.claims?.id, call.headers['x-msg']);
        assert.deepEqual(call.claims?.aud, ['orders']);
      }
      // Nothing acked before its fn finished or while its token was live; the failures were nacked as chosen.
      assert.equal(atAck.length, 199);
      assert.ok(
        atAck.every((a) => a.fnDone),
        'no message acked before its function finished',
      );
      assert.deepEqual(await Promise.all(atAck.map((a) => a.live)), Array(199).fill(0), 'token revoked before the ack');
      assert.deepEqual(
        nacked.map((n) => [n.id, n.requeue]).sort(),
        [
          ['order-13', false],
          ['order-13', true],
          ['order-77', true],
        ],
        '13 requeued once then dead-lettered, 77 requeued once (then acked)',
      );
      assert.deepEqual(await Promise.all(nacked.map((n) => n.live)), [0, 0, 0], 'token revoked before the nack');
      assert.ok(atAck.some((a) => a.id === 'order-77'));
      assert.ok(!atAck.some((a) => a.id === 'order-13'));
      // The failed message is in the dead-letter queue, and its token is dead: the service refuses it now.
      const deadMsg = await channel.get(dead, { noAck: true });
      assert.ok(deadMsg, 'the poisoned message was dead-lettered');
      assert.equal(deadMsg.properties.messageId, 'order-13');
      const sent13 = [...orders.calls].reverse().find((c) => c.headers['x-msg'] === 'order-13')!;
      const replay = await fetch(`${orders.url}/replay`, { headers: { authorization: `Bearer ${sent13.token}` } });
      assert.equal(replay.status, 401);
      assert.equal(((await replay.json()) as { error: string }).error, 'revoked');
      assert.equal(new Set([...jtiOf.values()].flat()).size, 202, 'a fresh token for each delivery');
      assert.deepEqual(await liveTokens(), [], 'no token live at the end');
    } finally {
      // On a channel of its own: a failure above may have closed the test's channel.
      const cleanup = await amqp.createChannel();
      await cleanup.deleteQueue(queue).catch(() => undefined);
      await cleanup.deleteQueue(dead).catch(() => undefined);
      await cleanup.deleteExchange(dlx).catch(() => undefined);
      await cleanup.close().catch(() => undefined);
    }
  });
});

describe("BullMQ: scopedProcessor on the application's own queue", () => {
  test('each job in its own scope; a failed attempt revoked; no token live at the end', async () => {
    const name = `emails-${tag}`;
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(name, { connection, prefix: 'app' });
    const events = new QueueEvents(name, { connection: { url: redis.url }, prefix: 'app' });
    const seen = new Map<string, string>();
    const worker = new Worker(
      name,
      scopedProcessor<{ n: number }>(scopes, { subject: 'consumer:emails', audience: 'orders' }, async (job, ctx) => {
        assert.equal(await client.exists(tokenKey(ctx.token.claims.jti)), 1);
        seen.set(String(job.id), ctx.token.claims.jti);
        const { id } = await ctx.service('orders').get(`mail/${job.data.n}`).json<{ id: string }>();
        if (job.data.n === 3) throw new Error('no mailbox');
        return id;
      }),
      { connection, prefix: 'app', concurrency: 5 },
    );
    try {
      await events.waitUntilReady();
      const jobs = await queue.addBulk(Array.from({ length: 10 }, (_, n) => ({ name: 'mail', data: { n } })));
      const results = await Promise.allSettled(jobs.map((j) => j.waitUntilFinished(events, 20_000)));
      results.forEach((r, n) => {
        if (n === 3) assert.equal(r.status, 'rejected');
        else assert.deepEqual(r, { status: 'fulfilled', value: `${name}:${jobs[n].id}` });
      });
      assert.equal(new Set(seen.values()).size, 10);
      assert.deepEqual(await liveTokens(), []);
    } finally {
      await worker.close();
      await events.close();
      await queue.obliterate({ force: true });
      await queue.close();
      connection.disconnect();
    }
  });
});
