import { defineJob } from 'jobscope';

// Fails on its first attempts and succeeds on the last: each attempt gets a fresh token (see the `att` claim).
export default defineJob({
  description: 'An import that fails twice, then succeeds (retries with backoff)',
  params: {
    type: 'object',
    properties: { failTimes: { type: 'integer', minimum: 0, maximum: 5, default: 2 } },
    additionalProperties: false,
  },
  token: { audience: ['system'], scope: ['import:write'] },
  attempts: 3,
  backoff: { type: 'fixed', delay: 500 },
  async run(ctx) {
    await ctx.log(`attempt ${ctx.run.attempt} with token ${ctx.token.claims.jti}`);
    if (ctx.run.attempt <= ctx.data.failTimes) throw new Error(`upstream not ready (attempt ${ctx.run.attempt})`);
    return { imported: true, attempt: ctx.run.attempt };
  },
});
