// Tracing with the official OpenTelemetry SDK and OTLP/HTTP exporter (turned on by OTEL_EXPORTER_OTLP_ENDPOINT), into a
// receiver on 127.0.0.1 that keeps the exact bytes the exporter sent (http/json): one API trigger -> a run of 2 attempts
// -> 2 service calls each gives one trace nesting trigger > run > attempt > client call > service request, with the
// attributes, and no token anywhere in what was exported.
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { generateEcPem } from '../src/token/signing-keys.ts';
import { createScopes } from '../src/scopes.ts';
import { enableTracing, type Tracing } from '../src/trace.ts';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { ADMIN, JWT_LIKE, TestServer } from './helpers/server.ts';
import { VerifyingService } from './helpers/service.ts';

const PREFIX = 'trc';
const JOBS = {
  'script.ts': `import { defineJob } from 'jobscope';
export default defineJob({
  token: { audience: ['system'], scope: ['dict:read'] },
  async run(ctx) {
    await ctx.exec('sh', ['-c', 'echo "tp=$TRACEPARENT"']);
  },
});
`,
  'flaky.ts': `import { defineJob } from 'jobscope';
export default defineJob({
  token: { audience: ['system'], scope: ['dict:read'] },
  attempts: 2,
  backoff: { type: 'fixed', delay: 50 },
  async run(ctx) {
    await ctx.service('system').get('sys/dict/a').json();
    await ctx.service('system').get('sys/dict/b?secret=not-exported').json();
    if (ctx.run.attempt === 1) throw new Error('first attempt fails');
    return { ok: true };
  },
});
`,
};

let redis: TestRedis;
let fx: Fixture;
let server: TestServer;
let service: VerifyingService;
let receiver: http.Server;
let tracing: Tracing | undefined;
let keyFile: string;
const exported: string[] = [];

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: { stringValue?: string; intValue?: number | string } }[];
}

function spansOf(bodies: string[]): OtlpSpan[] {
  const out: OtlpSpan[] = [];
  for (const body of bodies) {
    const doc = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] };
    for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) out.push(...ss.spans);
  }
  return out;
}

function attr(span: OtlpSpan, key: string): string | number | undefined {
  const v = span.attributes?.find((a) => a.key === key)?.value;
  if (!v) return undefined;
  return v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined);
}

before(async () => {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/v1/traces') exported.push(Buffer.concat(chunks).toString('utf8'));
      res.setHeader('content-type', 'application/json');
      res.end('{}');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  // The standard variables, as an operator sets them; the official exporter reads them itself.
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  process.env.OTEL_EXPORTER_OTLP_PROTOCOL = 'http/json';
  process.env.OTEL_BSP_SCHEDULE_DELAY = '100';
  tracing = await enableTracing();

  // Redis first: the service checks liveness there.
  redis = await startRedis();
  const pem = generateEcPem();
  keyFile = path.join(os.tmpdir(), `jobscope-trace-${process.pid}.pem`);
  writeFileSync(keyFile, pem);
  service = await new VerifyingService({ audience: 'system', publicKey: createPublicKey(pem), redis: redis.url, prefix: PREFIX }).start();
  fx = await jobscopeFixture({
    jobs: JOBS,
    redisServer: redis,
    env: {
      JOBSCOPE_PREFIX: PREFIX,
      JOBSCOPE_SERVICES: `system=${service.url}`,
      JOBSCOPE_SIGNING_KEY_FILE: keyFile,
      JOBSCOPE_TRACE_URL: 'http://jaeger.example:16686/trace/{traceId}',
    },
    workers: true,
    server: true,
  });
  server = fx.server;
});

after(async () => {
  await tracing?.shutdown();
  await fx?.close();
  await service?.stop();
  receiver?.close();
  await redis?.destroy();
  if (keyFile) rmSync(keyFile, { force: true });
});

test('one trace: trigger > run > attempt > client call > service request; attributes; no token exported', async () => {
  assert.ok(tracing, 'OTEL_EXPORTER_OTLP_ENDPOINT turns tracing on');
  const answer = await server.request('/api/jobs/flaky/runs', { method: 'POST', auth: ADMIN, json: { data: {} } });
  assert.equal(answer.status, 202, answer.text);
  const runId = answer.body.runId as string;
  const report = await fx.wait(runId, 20_000);
  assert.equal(report.outcome, 'completed');
  assert.equal(report.attempts, 2);
  assert.equal(service.calls.length, 4);
  assert.ok(service.calls.every((c) => c.status === 200));

  await tracing!.forceFlush();
  const want = 1 + 1 + 2 + 4 + 4;
  await until(() => spansOf(exported).length >= want, 10_000, 'the spans to be exported');
  const spans = spansOf(exported);
  assert.equal(spans.length, want, spans.map((s) => s.name).join(', '));
  assert.equal(new Set(spans.map((s) => s.traceId)).size, 1, 'one trace');

  const named = (prefix: string) => spans.filter((s) => s.name.startsWith(prefix));
  const [trigger] = named('trigger flaky');
  const [run] = named('run flaky');
  const attempts = named('attempt flaky').sort((a, b) => Number(attr(a, 'jobscope.attempt')) - Number(attr(b, 'jobscope.attempt')));
  const clients = spans.filter((s) => s.kind === 3); // SPAN_KIND_CLIENT
  const requests = spans.filter((s) => s.kind === 2); // SPAN_KIND_SERVER
  assert.ok(trigger && run);
  assert.equal(attempts.length, 2);
  assert.equal(clients.length, 4);
  assert.equal(requests.length, 4);

  // Nesting, by parent span ids.
  assert.equal(run.parentSpanId, trigger.spanId, 'run under trigger');
  for (const a of attempts) assert.equal(a.parentSpanId, run.spanId, 'attempt under run');
  for (const c of clients)
    assert.ok(
      attempts.some((a) => a.spanId === c.parentSpanId),
      'client call under an attempt',
    );
  for (const a of attempts) assert.equal(clients.filter((c) => c.parentSpanId === a.spanId).length, 2, 'two calls per attempt');
  for (const r of requests)
    assert.ok(
      clients.some((c) => c.spanId === r.parentSpanId),
      'service request under a client call',
    );

  // Attributes.
  assert.equal(attr(trigger, 'jobscope.job'), 'flaky');
  assert.equal(attr(trigger, 'jobscope.run.id'), runId);
  assert.equal(attr(trigger, 'jobscope.triggered_by'), 'user:admin');
  assert.equal(attr(run, 'jobscope.run.id'), runId);
  assert.equal(attr(run, 'jobscope.outcome'), 'completed');
  assert.equal(attr(run, 'jobscope.attempts'), 2);
  assert.deepEqual(
    attempts.map((a) => [attr(a, 'jobscope.attempt'), attr(a, 'jobscope.outcome'), attr(a, 'jobscope.run.id'), attr(a, 'jobscope.job')]),
    [
      [1, 'failed', runId, 'flaky'],
      [2, 'completed', runId, 'flaky'],
    ],
  );
  assert.deepEqual(
    attempts.map((a) => attr(a, 'jobscope.trigger')),
    ['api', 'retry'],
  );
  for (const s of [run, ...attempts]) {
    assert.equal(attr(s, 'jobscope.triggered_by'), 'user:admin');
    assert.equal(typeof attr(s, 'jobscope.duration_ms'), 'number');
  }
  for (const c of clients) {
    assert.equal(attr(c, 'jobscope.service'), 'system');
    assert.equal(attr(c, 'http.response.status_code'), 200);
  }
  const jtis = new Set(service.calls.map((c) => c.claims?.jti));
  for (const r of requests) {
    assert.equal(attr(r, 'jobscope.token.sub'), 'job:flaky');
    assert.equal(attr(r, 'jobscope.token.run'), runId);
    assert.ok(jtis.has(String(attr(r, 'jobscope.token.jti'))));
  }
  // The API's run view names the trace, and links to it (JOBSCOPE_TRACE_URL).
  const view = await server.request(`/api/runs/${encodeURIComponent(runId)}`, { auth: ADMIN });
  assert.equal(view.body.traceId, trigger.traceId);
  assert.equal(view.body.traceUrl, `http://jaeger.example:16686/trace/${trigger.traceId}`);

  // No token (nor anything shaped like one), no query string, in what left the process.
  const bytes = exported.join('\n');
  for (const call of service.calls) assert.ok(!bytes.includes(call.token!), 'a token was exported');
  assert.doesNotMatch(bytes, JWT_LIKE);
  assert.ok(!bytes.includes('not-exported'), 'a query string was exported');
});

test('a consumer scope continues the message traceparent: scope > client call > service request', async () => {
  const scopes = createScopes({
    redisUrl: redis.url,
    prefix: PREFIX,
    signingKeyFile: keyFile,
    services: { system: service.url },
  });
  try {
    const traceId = 'a1'.repeat(16);
    const parentSpan = 'b2'.repeat(8);
    exported.length = 0;
    await scopes.run(
      { subject: 'consumer:dict', audience: 'system', id: 'msg-7', traceparent: `00-${traceId}-${parentSpan}-01` },
      async (ctx) => ctx.service('system').get('sys/dict/c').json(),
    );
    await tracing!.forceFlush();
    await until(() => spansOf(exported).length >= 3, 10_000, 'the scope spans');
    const spans = spansOf(exported);
    const scope = spans.find((s) => s.name === 'scope consumer:dict')!;
    const client = spans.find((s) => s.kind === 3)!;
    const request = spans.find((s) => s.kind === 2)!;
    assert.ok(scope && client && request, spans.map((s) => s.name).join(', '));
    assert.deepEqual([scope.traceId, client.traceId, request.traceId], [traceId, traceId, traceId]);
    assert.equal(scope.parentSpanId, parentSpan);
    assert.equal(scope.kind, 5); // SPAN_KIND_CONSUMER
    assert.equal(client.parentSpanId, scope.spanId);
    assert.equal(request.parentSpanId, client.spanId);
    assert.equal(attr(scope, 'messaging.message.id'), 'msg-7');
    assert.equal(attr(scope, 'jobscope.outcome'), 'completed');
    assert.equal(attr(request, 'jobscope.token.sub'), 'consumer:dict');
    const token = service.calls.at(-1)!.token!;
    assert.ok(!exported.join('\n').includes(token));
  } finally {
    await scopes.close();
  }
});

test('ctx.exec hands the run its trace: TRACEPARENT in the process environment, in the trace of the trigger', async () => {
  const answer = await server.request('/api/jobs/script/runs', { method: 'POST', auth: ADMIN, json: { data: {} } });
  assert.equal(answer.status, 202, answer.text);
  const report = await fx.wait(answer.body.runId as string, 20_000);
  assert.equal(report.outcome, 'completed', JSON.stringify(report));
  const view = await server.request(`/api/runs/${encodeURIComponent(report.runId)}`, { auth: ADMIN });
  const line = report.logs.find((l) => l.includes('tp='));
  assert.match(String(line), new RegExp(`tp=00-${view.body.traceId}-[0-9a-f]{16}-0[01]`), JSON.stringify(report.logs));
});
