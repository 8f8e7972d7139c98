// A RabbitMQ consumer next to the example system service: each message is handled in its own token scope (createScopes),
// so its calls to the system service carry a short-lived token whose subject is the consumer (`consumer:dict-events`) and
// whose `id` claim is the message id; the token is revoked before the message is acked (or dead-lettered when it fails).
//
//   node --import tsx examples/consumer.ts        (with `npm start` running: the system service and the runner's JWKS)
//   AMQP_URL=amqp://guest:guest@127.0.0.1:5672  JOBSCOPE_SERVICES=system=http://127.0.0.1:4000
import { connect } from 'amqplib';
import { consumeWithScope, createScopes } from 'jobscope';

const scopes = createScopes({
  // The runner's Redis, prefix and signing key: the system service verifies these tokens like a run's.
  redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  prefix: process.env.JOBSCOPE_PREFIX,
  signingKeyFile: process.env.JOBSCOPE_SIGNING_KEY_FILE,
  services: { system: process.env.SYSTEM_URL ?? 'http://127.0.0.1:4000' },
});

const amqp = await connect(process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
const channel = await amqp.createChannel();
await channel.assertExchange('dict-events.dead', 'fanout');
await channel.assertQueue('dict-events.dead');
await channel.bindQueue('dict-events.dead', 'dict-events.dead', '');
await channel.assertQueue('dict-events', { deadLetterExchange: 'dict-events.dead' });
await channel.prefetch(10); // ten messages in hand at once, each in its own scope

const consumer = await consumeWithScope(
  channel,
  'dict-events',
  scopes,
  { subject: 'consumer:dict-events', audience: ['system'], scope: ['dict:read'], onFailure: 'dead-letter' },
  async (msg, ctx) => {
    const { code } = JSON.parse(msg.content.toString()) as { code: string };
    const { dict } = await ctx.service('system').get('sys/dict/all', { signal: ctx.signal }).json<{ dict: { code: string }[] }>();
    console.error(`message ${ctx.scope.messageId}: ${code} ${dict.some((d) => d.code === code) ? 'known' : 'unknown'}`);
  },
);
console.error('consuming dict-events; Ctrl-C to stop');

process.once('SIGINT', async () => {
  await consumer.cancel(); // stops taking messages, waits for those in hand
  await channel.close();
  await amqp.close();
  await scopes.close();
});
