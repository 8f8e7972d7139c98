import { defineJob } from 'jobscope';

interface Dict {
  calledBy: string;
  dict: { code: string; items: string[] }[];
}

// Calls the system service with this run's own token: no fake login, no shared secret in the job.
export default defineJob({
  description: 'Copy the dictionary from the system service',
  schedule: { every: '30s' },
  params: { type: 'object', properties: { full: { type: 'boolean', default: false } }, additionalProperties: false },
  token: { audience: ['system'], scope: ['dict:read'] },
  attempts: 3,
  backoff: { type: 'exponential', delay: 1000 },
  timeout: '1m',
  async run(ctx) {
    const body = await ctx.service('system').get('sys/dict/all').json<Dict>();
    await ctx.log(`fetched ${body.dict.length} dictionaries as ${body.calledBy} (token ${ctx.token.claims.jti})`);
    return { count: body.dict.length, full: ctx.data.full };
  },
});
