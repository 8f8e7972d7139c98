// A RabbitMQ consumer whose every message is handled inside its own token scope (createScopes): the tokens are minted and
// live before the handler starts, revoked when it ends, and only then is the message settled: acked when the handler
// succeeded, nacked when it threw (requeued, or dead-lettered through the queue's x-dead-letter-exchange: the caller's
// choice, per message if need be). Nothing is acked before its handler finished, and no token outlives its message.
//
// amqplib is an optional peer dependency: this module never imports it. It takes the channel you opened (typed by the
// few methods it calls), so it works with amqplib 0.10 and 2.x alike, and costs nothing to those who do not use RabbitMQ.
import type { ScopeContext, ScopeSpec, Scopes } from '../scopes.ts';

/** What this adapter reads of an amqplib message (`ConsumeMessage`). */
export interface AmqpMessage {
  content: Buffer;
  fields: { deliveryTag: number; redelivered: boolean; routingKey?: string; exchange?: string };
  properties: { messageId?: unknown; headers?: Record<string, unknown> | undefined };
}

/** What this adapter calls on an amqplib channel (`Channel` or `ConfirmChannel`). */
export interface AmqpChannel<M extends AmqpMessage = AmqpMessage> {
  consume(
    queue: string,
    onMessage: (msg: M | null) => void,
    options?: { noAck?: boolean; consumerTag?: string },
  ): Promise<{ consumerTag: string }>;
  cancel(consumerTag: string): Promise<unknown>;
  ack(message: M): void;
  nack(message: M, allUpTo?: boolean, requeue?: boolean): void;
}

/** What happens to a message whose handler threw. */
export type OnFailure = 'requeue' | 'dead-letter';

export interface ConsumeOptions<M extends AmqpMessage = AmqpMessage> extends Omit<ScopeSpec, 'id' | 'act' | 'signal' | 'traceparent'> {
  /**
   * A failed message: 'dead-letter' (default: `nack` without requeue; RabbitMQ routes it to the queue's dead-letter
   * exchange, or drops it if the queue has none) or 'requeue'; or a function choosing per message and error.
   */
  onFailure?: OnFailure | ((err: unknown, msg: M) => OnFailure);
  /** The token's `id` claim: default the message's `messageId` property, else `<queue>#<deliveryTag>`. */
  id?(msg: M): string | undefined;
  /** The actor (`act`) of a message, if one is known (e.g. from a header a trusted publisher sets). */
  act?(msg: M): ScopeSpec['act'];
  /** Told after each message was settled (acked or nacked), with its handler's error if it threw. */
  settled?(event: { msg: M; outcome: 'ack' | OnFailure; error?: unknown }): void;
  consumerTag?: string;
}

export interface ScopedConsumer {
  consumerTag: string;
  /** Stops the consumer, then waits for the messages in hand to be handled and settled. */
  cancel(): Promise<void>;
}

function idOf(msg: AmqpMessage, queue: string): string {
  const id = msg.properties.messageId;
  return typeof id === 'string' && id ? id : `${queue}#${msg.fields.deliveryTag}`;
}

function traceparentOf(msg: AmqpMessage): string | undefined {
  const value = msg.properties.headers?.traceparent;
  return typeof value === 'string' ? value : undefined;
}

/**
 * Consumes `queue` on `channel` (set `channel.prefetch(n)` first: that many messages are handled at once), each message in
 * `scopes.run(...)` with the options' subject, audience and scope. Acknowledgement mode is always manual.
 *
 *   await channel.prefetch(10);
 *   await consumeWithScope(channel, 'orders', scopes, { subject: 'consumer:orders', audience: ['orders'] }, async (msg, ctx) => {
 *     await ctx.service('orders').post('orders/confirm', { json: JSON.parse(msg.content.toString()) });
 *   });
 */
export async function consumeWithScope<M extends AmqpMessage>(
  channel: AmqpChannel<M>,
  queue: string,
  scopes: Scopes,
  options: ConsumeOptions<M>,
  handler: (msg: M, ctx: ScopeContext) => Promise<unknown> | unknown,
): Promise<ScopedConsumer> {
  const { onFailure = 'dead-letter', id, act, settled, consumerTag: tag, ...spec } = options;
  const inHand = new Set<Promise<void>>();

  const handle = async (msg: M): Promise<void> => {
    let outcome: 'ack' | OnFailure = 'ack';
    let error: unknown;
    try {
      // scopes.run settles only after the scope's tokens are revoked: the ack or nack below always comes after that.
      await scopes.run({ ...spec, id: id ? id(msg) : idOf(msg, queue), act: act?.(msg), traceparent: traceparentOf(msg) }, async (ctx) => {
        await handler(msg, ctx);
      });
    } catch (err) {
      error = err;
      try {
        outcome = typeof onFailure === 'function' ? onFailure(err, msg) : onFailure;
      } catch {
        outcome = 'dead-letter';
      }
    }
    // A closed channel throws here; the broker then redelivers the message (it was never acked), which is what we want.
    try {
      if (outcome === 'ack') channel.ack(msg);
      else channel.nack(msg, false, outcome === 'requeue');
    } finally {
      settled?.({ msg, outcome, ...(error !== undefined ? { error } : {}) });
    }
  };

  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return; // the broker cancelled the consumer (queue deleted)
      const done = handle(msg).catch(() => undefined);
      inHand.add(done);
      void done.finally(() => inHand.delete(done));
    },
    { noAck: false, ...(tag ? { consumerTag: tag } : {}) },
  );

  return {
    consumerTag,
    async cancel() {
      await channel.cancel(consumerTag);
      await Promise.all([...inHand]);
    },
  };
}
