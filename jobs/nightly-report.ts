import { defineJob } from 'jobscope';

// A cron schedule with seconds and a time zone; long work reports progress and honours ctx.signal.
export default defineJob({
  description: 'Build the nightly report (cron, Asia/Shanghai)',
  schedule: { cron: '0 30 2 * * *', tz: 'Asia/Shanghai' },
  params: { type: 'object', properties: { days: { type: 'integer', minimum: 1, maximum: 31, default: 1 } }, additionalProperties: false },
  token: { audience: ['system'], scope: ['report:read'] },
  timeout: '2m',
  overlap: 'skip',
  async run(ctx) {
    const days = ctx.data.days; // a number: typed from params (its default makes it always present)
    for (let day = 1; day <= days; day++) {
      ctx.signal.throwIfAborted();
      await new Promise((r) => setTimeout(r, 50));
      await ctx.progress(Math.round((day / days) * 100));
      await ctx.log(`day ${day}/${days} done`);
    }
    return { days };
  },
});
