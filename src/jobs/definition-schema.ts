// A job definition (`defineJob({...})`) described once, as a JSON Schema: every field, its shape and the problem a job file is
// told when the field breaks it. Each node's `problem` annotation is that message (definition-problems.ts turns ajv's errors
// into it); what no schema can say (cron expressions, time zones, durations, params as a schema, one field against another)
// is checked after it, in definition-checks.ts.

export const ALERT_EVENTS = ['failed', 'timeout', 'misfire', 'recovered'] as const;
export const MAX_SHARDS = 1000;

/** The problem of a value that is none of `values`: "must be 'a', 'b' or 'c'". */
function choice(...values: string[]) {
  const quoted = values.map((v) => `'${v}'`);
  return { enum: values, problem: `must be ${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)}` };
}

const integer = (minimum: number, maximum: number) => ({
  type: 'integer',
  minimum,
  maximum,
  problem: `must be an integer from ${minimum} to ${maximum}`,
});

/**
 * Only the listed fields: any other one fails with "unknown field; allowed: ..." (the worded `additionalProperties: false`).
 * The definition itself lists its fields as "allowed fields".
 */
function closed<P extends Record<string, object>>(properties: P, label = 'allowed') {
  return { properties, additionalProperties: { not: {}, problem: `unknown field; ${label}: ${Object.keys(properties).join(', ')}` } };
}

/** '30s', '2m', '1h', '7d' or milliseconds: checked after the schema, whose problem quotes the value (definition-checks.ts). */
const DURATION = { description: 'a duration' };

/** True of an object that has the key at all, even with the value undefined (as `'cron' in schedule`). */
const hasKey = (key: string) => ({ not: { propertyNames: { not: { const: key } } } });

const SCHEDULE = {
  type: 'object',
  problem: "must be { cron: '0 */5 * * * *', tz?: 'Area/City' } or { every: '30s' }",
  if: hasKey('cron'),
  then: {
    required: ['cron'],
    propertyNames: { enum: ['cron', 'tz'], problem: 'a cron schedule takes only cron and tz' },
    properties: {
      cron: { type: 'string', problem: 'must be a string' },
      tz: { type: 'string', problem: 'must be an IANA time zone string' },
    },
  },
  else: {
    if: hasKey('every'),
    then: { propertyNames: { const: 'every', problem: 'an interval schedule takes only every' }, properties: { every: DURATION } },
    // Neither key: nothing is valid.
    else: { not: {}, problem: "must have cron or every: { cron: '0 */5 * * * *' } or { every: '30s' }" },
  },
};

const TOKEN = {
  type: 'object',
  problem: "is required: { audience: ['service-name'], scope: ['read'] } (least privilege)",
  // audience and scope are each reported beside the token's own problem (the other fields of an object stop at the first).
  sections: true,
  required: ['audience'],
  ...closed({
    audience: {
      type: 'array',
      minItems: 1,
      items: { type: 'string', pattern: '^[A-Za-z0-9_.:/-]+$' },
      problem: "must be a non-empty array of service names, e.g. ['system']",
    },
    scope: {
      type: 'array',
      items: { type: 'string', pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$' },
      problem: "must be an array of scope strings without spaces, e.g. ['dict:read']",
    },
  }),
};

const BACKOFF = {
  type: 'object',
  problem: "must be { type: 'fixed' or 'exponential', delay: 1000 }",
  required: ['type', 'delay'],
  ...closed({
    type: choice('fixed', 'exponential'),
    delay: { type: 'number', minimum: 0, problem: 'must be a number of milliseconds >= 0' },
    jitter: { type: 'number', minimum: 0, maximum: 1, problem: 'must be between 0 and 1' },
  }),
};

const RATE_LIMIT = {
  type: 'object',
  problem: "must be { max: 10, duration: '1m' }",
  required: ['max'],
  ...closed({ max: { type: 'integer', minimum: 1, problem: 'must be an integer >= 1 (run starts per duration)' }, duration: DURATION }),
};

const THEN = {
  type: 'array',
  problem: "must be a list: ['report', { job: 'notify', data: (result, run) => ({ ... }) }]",
  items: {
    type: ['string', 'object'],
    problem: "must be a job name or { job: 'name', data?: (result, run) => data }",
    required: ['job'],
    ...closed({ job: { type: 'string' }, data: { typeof: 'function', problem: 'must be a function (result, run) => data' } }),
  },
};

const ALERT = {
  type: 'object',
  problem: "must be { webhook?: 'https://...', on?: ['failed', 'timeout', 'misfire', 'recovered'] }",
  ...closed({
    // An http(s) URL: the URL itself is parsed after the schema.
    webhook: { type: 'string', problem: 'must be an http(s) URL' },
    on: { type: 'array', items: { enum: ALERT_EVENTS }, problem: `must be a list of ${ALERT_EVENTS.map((e) => `'${e}'`).join(', ')}` },
  }),
};

const KEEP_RULE = {
  type: 'object',
  problem: "must be { count?: 1000, age?: '7d' }",
  ...closed({ count: { type: 'integer', minimum: 0, problem: 'must be an integer >= 0 (runs kept)' }, age: DURATION }),
};

/** The fields in the order of the README's job reference, which "unknown field" lists. */
export const DEFINITION_SCHEMA = {
  type: 'object',
  required: ['run', 'token'],
  ...closed(
    {
      description: { type: 'string', problem: 'must be a string' },
      schedule: SCHEDULE,
      params: {
        type: 'object',
        problem: "must be a JSON Schema object, e.g. { type: 'object', properties: {...} }",
        required: ['type'],
        // Any other keyword of a JSON Schema; the whole is compiled after this schema.
        properties: { type: { const: 'object', problem: "must be 'object': run data is always a JSON object" } },
      },
      token: TOKEN,
      attempts: integer(1, 100),
      backoff: BACKOFF,
      timeout: DURATION,
      concurrency: integer(1, 1000),
      concurrencyPerWorker: integer(1, 1000),
      rateLimit: RATE_LIMIT,
      overlap: choice('queue', 'skip', 'replace'),
      misfire: choice('skip', 'once'),
      misfireGrace: DURATION,
      then: THEN,
      shards: {
        anyOf: [{ const: 'workers' }, { type: 'integer', minimum: 1, maximum: MAX_SHARDS }],
        problem: `must be an integer from 1 to ${MAX_SHARDS}, or 'workers' (one shard per live worker serving the job)`,
      },
      group: {
        type: 'string',
        // The alphabet of job names: groups appear in CLI flags (`jobscope worker --group`) and Redis.
        pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$',
        problem: "must be a name of letters, digits, '-' or '_' (the same as `jobscope worker --group <name>`)",
      },
      alert: ALERT,
      keep: {
        type: 'object',
        problem: "must be { completed?: { count?: 1000, age?: '7d' }, failed?: { count?: 5000, age?: '30d' } }",
        ...closed({ completed: KEEP_RULE, failed: KEEP_RULE }),
      },
      paused: { type: 'boolean', problem: 'must be true or false (the state a new job starts in)' },
      run: { typeof: 'function', problem: 'must be a function: async run(ctx) { ... }' },
    },
    'allowed fields',
  ),
};
