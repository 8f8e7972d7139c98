// The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core) against a real server,
// workers and Redis on 127.0.0.1: log in, see the jobs, trigger a run with parameters from the form, watch its logs arrive
// live, see a validation error, use the form's trigger options (run later, priority, idempotency key, overlap refusal), see
// a timed-out run's outcome, see tokens and workers, the read-only view, Bull Board, and the refusal without a login.
// Screenshots go to test-artifacts/ (the README's docs/screenshots/ are copies of these).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { Runtime } from '../src/runtime/runtime.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { ROOT, jobsDir, removeDir, testRuntime } from './helpers/runtime.ts';
import { ADMIN, JWT_LIKE, TestServer, VIEWER } from './helpers/server.ts';
import { until, waitForRun } from './helpers/wait.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
];

let redis: TestRedis;
let dir: string;
let runtime: Runtime;
let srv: TestServer;
const contexts: { context: BrowserContext; dataDir: string }[] = [];
/** Console messages and failed requests to other origins, from every page: the pages must need nothing from outside. */
const problems: string[] = [];

async function open(credentials?: { user: string; password: string }): Promise<Page> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'jobscope-chromium-'));
  const context = await chromium.launchPersistentContext(dataDir, {
    executablePath: CHROMIUM,
    args: ARGS,
    headless: true,
    viewport: { width: 1280, height: 860 },
    ...(credentials ? { httpCredentials: { username: credentials.user, password: credentials.password } } : {}),
  });
  contexts.push({ context, dataDir });
  // Only 127.0.0.1 traffic: anything else (e.g. Bull Board's web font) is refused here, never fetched.
  await context.route(
    (url) => url.hostname !== '127.0.0.1',
    (route) => route.abort(),
  );
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15_000);
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Uncaught|TypeError|ReferenceError/.test(msg.text())) problems.push(msg.text());
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  return page;
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Opens a job's detail row on the Jobs page and returns its Run-now form. */
async function runForm(page: Page, job: string) {
  await page.locator(`tr[data-job="${job}"] button[data-action="open"]`).click();
  const form = page.locator(`form.run-form[data-job="${job}"]`);
  await form.waitFor();
  return form;
}

async function noTokenIn(page: Page): Promise<void> {
  assert.doesNotMatch(await page.content(), JWT_LIKE, `a token-like string on ${page.url()}`);
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  mkdirSync(ARTIFACTS, { recursive: true });
  redis = await startRedis();
  dir = jobsDir({
    'greet.ts': `export default {
      description: 'Greets someone, one log line at a time',
      params: { type: 'object', required: ['name'], additionalProperties: false, properties: {
        name: { type: 'string', minLength: 1, description: 'who to greet' },
        times: { type: 'integer', minimum: 1, maximum: 5, default: 2 },
        loud: { type: 'boolean', default: false },
      } },
      token: { audience: ['greeter'], scope: ['greet:write'] },
      async run(ctx) {
        for (let i = 1; i <= ctx.data.times; i++) {
          await new Promise((r) => setTimeout(r, 1000));
          const text = 'hello ' + ctx.data.name;
          await ctx.log('line ' + i + ': ' + (ctx.data.loud ? text.toUpperCase() : text));
        }
        await ctx.log('token ' + ctx.token.reveal());
        return { greeted: ctx.data.name, times: ctx.data.times };
      },
    };`,
    'sync-dict.ts': `export default {
      description: 'Copy the dictionary from the system service',
      schedule: { every: '1h' },
      params: { type: 'object', properties: { full: { type: 'boolean', default: false } }, additionalProperties: false },
      token: { audience: ['system'], scope: ['dict:read'] },
      async run() { return { count: 3 }; },
    };`,
    'nightly-report.ts': `export default {
      description: 'Build the nightly report (cron, Asia/Shanghai)',
      schedule: { cron: '0 30 2 * * *', tz: 'Asia/Shanghai' },
      params: { type: 'object', properties: { days: { type: 'integer', minimum: 1, maximum: 31, default: 1 } }, additionalProperties: false },
      token: { audience: ['system'], scope: ['report:read'] },
      overlap: 'skip',
      async run(ctx) {
        await new Promise((resolve, reject) => {
          const t = setTimeout(resolve, 4000);
          ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); });
        });
        return { days: ctx.data.days };
      },
    };`,
    'hang.ts': `export default {
      description: 'Waits for its signal: times out after 300 ms',
      token: { audience: ['system'] },
      timeout: '300ms',
      async run(ctx) {
        await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
      },
    };`,
  });
  ({ runtime } = await testRuntime({ redisUrl: redis.url, jobsDir: dir, env: { JOBSCOPE_PREFIX: 'ui' } }));
  await runtime.startWorkers();
  await runtime.syncSchedules();
  srv = await TestServer.start(runtime);
});

after(async () => {
  for (const { context, dataDir } of contexts) {
    await context.close().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  }
  await srv?.close();
  await runtime?.close();
  await redis?.destroy();
  removeDir(dir);
});

describe('dashboard in a browser', () => {
  test('without a login, or with a wrong one, the browser gets 401 for the pages, Bull Board and the API', async () => {
    const refused = async (context: BrowserContext, url: string) => {
      const page = await context.newPage();
      const response = page.waitForResponse((r) => r.url() === url);
      const navigation = page.goto(url).then(
        () => null,
        (err: Error) => err,
      );
      const [res, err] = await Promise.all([response, navigation]);
      assert.equal(res.status(), 401, url);
      // Without credentials Chromium aborts the navigation; after refused credentials it shows the 401 answer itself.
      if (err) assert.match(err.message, /ERR_INVALID_AUTH_CREDENTIALS/, url);
      else assert.match(await page.content(), /"error":"unauthorized"/, url);
      assert.doesNotMatch(await res.text(), /greet|sync-dict/);
      await page.close();
    };
    const anonymous = (await open()).context();
    for (const p of ['/dashboard/', '/dashboard/run.html?id=greet:1', '/dashboard/queues/', '/api/jobs'])
      await refused(anonymous, srv.url + p);
    const wrong = (await open({ user: ADMIN.user, password: 'not-the-password' })).context();
    await refused(wrong, `${srv.url}/dashboard/`);
  });

  test('the admin sees every job with its description, schedule, next fire times and state', async () => {
    const page = await open(ADMIN);
    const res = await page.goto(`${srv.url}/dashboard`);
    assert.equal(res?.status(), 200);
    assert.equal(new URL(page.url()).pathname, '/dashboard/');
    await page.locator('tr[data-job="greet"]').waitFor();
    assert.match((await page.locator('#me').textContent()) ?? '', /admin \(admin\)/);
    const rows = await page.locator('table.jobs > tbody > tr[data-job]').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-job')));
    assert.deepEqual(rows, ['greet', 'hang', 'nightly-report', 'sync-dict']);
    const nightly = page.locator('tr[data-job="nightly-report"]');
    assert.match((await nightly.textContent()) ?? '', /Build the nightly report/);
    assert.match((await nightly.textContent()) ?? '', /cron 0 30 2 \* \* \* \(Asia\/Shanghai\)/);
    assert.equal(await nightly.locator('ul.next li').count(), 3, 'next fire times');
    assert.match((await page.locator('tr[data-job="sync-dict"]').textContent()) ?? '', /every 1h/);
    assert.match((await page.locator('tr[data-job="greet"]').textContent()) ?? '', /manual.*active.*never/s);
    assert.equal(await page.locator('button[data-action="pause"]').count(), 4);
    await shot(page, 'jobs');
    await noTokenIn(page);
  });

  test('triggers a run with parameters from the generated form and watches its logs arrive live until it completes', async () => {
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/`);
    await page.locator('tr[data-job="greet"] button[data-action="open"]').click();
    const form = page.locator('form.run-form[data-job="greet"]');
    await form.waitFor();
    // The form is generated from the params schema: a text field, a number field with its default, a checkbox.
    assert.equal(await form.locator('input[name="name"]').getAttribute('type'), 'text');
    assert.equal(await form.locator('input[name="times"]').inputValue(), '2');
    assert.equal(await form.locator('input[name="loud"]').isChecked(), false);
    await shot(page, 'run-form');
    await form.locator('input[name="name"]').fill('Ada');
    await form.locator('input[name="times"]').fill('3');
    await form.locator('input[name="loud"]').check();
    await form.locator('button[type="submit"]').click();

    await page.waitForURL(/\/dashboard\/run\.html\?id=greet%3A\d+$/);
    const runId = decodeURIComponent(new URL(page.url()).searchParams.get('id')!);
    const logs = page.locator('#run-logs');
    const state = page.locator('#run-state');
    // Live: the page (which nobody reloads) shows the first log line while the run is still active, with the claims of
    // its live token. One snapshot of the DOM, so a refresh between two reads cannot mix states.
    const snapshot = () =>
      page.evaluate(() => ({
        state: document.querySelector('#run-state')?.textContent?.trim() ?? '',
        logs: document.querySelector('#run-logs')?.textContent ?? '',
        claims: document.querySelector('table.claims')?.textContent ?? '',
      }));
    let live = await snapshot();
    await until(async () => /line 1: HELLO ADA/.test((live = await snapshot()).logs), 10_000, 'the first log line');
    assert.equal(live.state, 'active');
    assert.doesNotMatch(live.logs, /line 3/);
    assert.match(live.claims, /job:greet.*greeter.*greet:write.*live/s);
    await shot(page, 'run-live');

    await until(async () => (await state.textContent())?.trim() === 'completed', 15_000, 'the run to complete');
    const text = (await logs.textContent()) ?? '';
    assert.match(text, /line 1: HELLO ADA\nline 2: HELLO ADA\nline 3: HELLO ADA/);
    assert.match(text, /token \[redacted/, 'the token the job logged was scrubbed');
    assert.deepEqual(JSON.parse((await page.locator('#run-result').textContent()) ?? ''), { greeted: 'Ada', times: 3 });
    assert.deepEqual(JSON.parse((await page.locator('#run-data').textContent()) ?? ''), { name: 'Ada', times: 3, loud: true });
    // After the run its token is revoked: the claims stay, marked as no longer live.
    await until(async () => /revoked or expired/.test((await page.locator('table.claims').textContent()) ?? ''), 5000, 'the revoked mark');
    const claims = await page.locator('table.claims tbody tr').count();
    assert.equal(claims, 1);
    const run = await runtime.queues.report(runId);
    assert.equal(run.state, 'completed');
    assert.equal(run.trigger, 'manual', 'a click in the dashboard is a manual trigger');
    await shot(page, 'run');
    await noTokenIn(page);
  });

  test('bad parameters show the server validation errors and start nothing', async () => {
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/`);
    await page.locator('tr[data-job="greet"] button[data-action="open"]').click();
    const form = page.locator('form.run-form[data-job="greet"]');
    const before = await runtime.queues.queue('greet').getJobCountByTypes('waiting', 'active', 'completed', 'failed');
    await form.locator('input[name="name"]').fill('');
    await form.locator('input[name="times"]').fill('99');
    await form.locator('button[type="submit"]').click();
    const errors = form.locator('ul.errors li');
    await errors.first().waitFor();
    const messages = await errors.allTextContents();
    assert.ok(
      messages.some((m) => /\/times must be <= 5/.test(m)),
      messages.join(' | '),
    );
    assert.ok(
      messages.some((m) => /name/.test(m)),
      messages.join(' | '),
    );
    assert.equal(new URL(page.url()).pathname, '/dashboard/', 'stayed on the form');
    assert.equal(await runtime.queues.queue('greet').getJobCountByTypes('waiting', 'active', 'completed', 'failed'), before);
    await shot(page, 'validation-error');
  });

  test('the form options: a run later with a priority and an idempotency key; the same key again links to that run; overlap skip links to the blocking run', async () => {
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/`);
    const form = await runForm(page, 'sync-dict');
    const options = form.locator('details.run-options');
    assert.equal(await options.getAttribute('open'), null, 'the options start folded');
    await options.locator('summary').click();
    await form.locator('input[name="delay"]').fill('10m');
    await form.locator('input[name="priority"]').fill('3');
    await form.locator('input[name="key"]').fill('dict-2026-11');
    await shot(page, 'run-options');
    await form.locator('button[type="submit"]').click();

    await page.waitForURL(/\/dashboard\/run\.html\?id=sync-dict%3A/);
    const runId = decodeURIComponent(new URL(page.url()).searchParams.get('id')!);
    await until(async () => (await page.locator('#run-state').textContent())?.trim() === 'delayed', 5000, 'the delayed run');
    assert.match((await page.locator('#run-due').textContent()) ?? '', /\(in (9|10)m\)/);
    const run = await runtime.queues.report(runId);
    assert.equal(run.state, 'delayed');
    assert.equal(run.priority, 3);
    assert.equal(run.trigger, 'manual');

    // The same key again while that run is kept: the answer is that run, and the page stays on the form.
    await page.goto(`${srv.url}/dashboard/`);
    const again = await runForm(page, 'sync-dict');
    await again.locator('details.run-options summary').click();
    await again.locator('input[name="key"]').fill('dict-2026-11');
    await again.locator('button[type="submit"]').click();
    const answer = again.locator('p.answer');
    await answer.waitFor();
    assert.match((await answer.textContent()) ?? '', /^a run with this key already exists: /);
    assert.equal(await answer.locator('a').getAttribute('href'), `run.html?id=${encodeURIComponent(runId)}`);
    assert.equal(new URL(page.url()).pathname, '/dashboard/', 'stayed on the form');
    await shot(page, 'run-existing');

    // overlap 'skip' while a run is active: the server's message and a link to the run that blocks this one.
    const { runId: blocking } = await runtime.queues.enqueue('nightly-report', { days: 1 }, { trigger: 'manual' });
    const skip = await runForm(page, 'nightly-report');
    await skip.locator('button[type="submit"]').click();
    const refused = skip.locator('p.answer.refused');
    await refused.waitFor();
    assert.match((await refused.textContent()) ?? '', /overlap: 'skip'/);
    assert.equal(await refused.locator('a').getAttribute('href'), `run.html?id=${encodeURIComponent(blocking)}`);
    await runtime.cancel(blocking);
    await runtime.cancel(runId);
  });

  test('a run that timed out shows the outcome timeout, not a plain failure, on the Run and Jobs pages', async () => {
    const { runId } = await runtime.queues.enqueue('hang', {}, { trigger: 'manual' });
    await waitForRun(runtime, runId);
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/run.html?id=${encodeURIComponent(runId)}`);
    const badge = page.locator('#run-state .badge');
    await until(async () => (await badge.textContent())?.trim() === 'timeout', 5000, 'the timeout outcome');
    assert.equal(await badge.getAttribute('data-outcome'), 'timeout');
    assert.match((await badge.getAttribute('class')) ?? '', /\boutcome-timeout\b/);
    assert.match((await page.locator('#run-error').textContent()) ?? '', /timed out/);
    assert.equal(await page.locator('button[data-action="cancel"]').count(), 0, 'a finished run has no cancel button');
    await shot(page, 'run-timeout');

    await page.goto(`${srv.url}/dashboard/`);
    const row = page.locator('tr[data-job="hang"]');
    await row.locator('.badge[data-outcome="timeout"]').waitFor();
    await row.locator('button[data-action="open"]').click();
    await page.locator('tr.detail:not([hidden]) ul.runs .badge[data-outcome="timeout"]').first().waitFor();
  });

  test('tokens and workers pages show the live token of an active run and the connected workers', async () => {
    const { runId } = await runtime.queues.enqueue('nightly-report', { days: 2 }, { trigger: 'manual' });
    await until(async () => (await runtime.tokens.list()).some((t) => t.run === runId), 5000, 'the run token');
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/tokens.html`);
    const row = page.locator('table.tokens tbody tr', { hasText: runId });
    await row.waitFor();
    assert.match((await row.textContent()) ?? '', /nightly-report.*system.*report:read/s);
    await shot(page, 'tokens');
    await noTokenIn(page);
    await runtime.cancel(runId);
    // The page refreshes by itself: the token disappears once revoked.
    await page.locator('#no-tokens').waitFor({ timeout: 10_000 });

    await page.goto(`${srv.url}/dashboard/workers.html`);
    await page.locator('tr[data-job="greet"]').waitFor();
    for (const job of ['greet', 'nightly-report', 'sync-dict']) {
      assert.equal((await page.locator(`tr[data-job="${job}"] td.num`).textContent())?.trim(), '1', job);
    }
    assert.match((await page.locator('tr[data-job="greet"]').textContent()) ?? '', /127\.0\.0\.1:\d+/);
    await shot(page, 'workers');
  });

  test('a read-only viewer sees the jobs and runs without any button that changes something', async () => {
    const page = await open(VIEWER);
    await page.goto(`${srv.url}/dashboard/`);
    await page.locator('tr[data-job="greet"]').waitFor();
    assert.match((await page.locator('#me').textContent()) ?? '', /viewer \(read-only\)/);
    assert.equal(await page.locator('button[data-action="pause"], button[data-action="resume"]').count(), 0);
    await page.locator('tr[data-job="greet"] button[data-action="open"]').click();
    await page.locator('tr.detail:not([hidden]) ul.runs li').first().waitFor();
    assert.equal(await page.locator('form.run-form').count(), 0, 'no run form');
    await page.locator('tr.detail:not([hidden]) ul.runs a').first().click();
    await page.locator('#run-state').waitFor();
    assert.equal(await page.locator('button[data-action="cancel"]').count(), 0);
    const board = await page.goto(`${srv.url}/dashboard/queues/`);
    assert.equal(board?.status(), 200);
    assert.equal(await page.title(), 'jobscope (read-only)');
  });

  test('Bull Board opens behind the same login, lists the job queues and needs nothing from outside', async () => {
    const page = await open(ADMIN);
    const res = await page.goto(`${srv.url}/dashboard/queues/`);
    assert.equal(res?.status(), 200);
    await page.getByText('greet', { exact: false }).first().waitFor();
    await page.getByText('nightly-report').first().waitFor();
    // The greet queue: the run the form started is there, with the data it was given.
    await page.getByText('greet', { exact: true }).first().click();
    await page.waitForURL(/\/dashboard\/queues\/queue\/greet/);
    await page.getByText('HELLO ADA').or(page.getByText('"Ada"')).first().waitFor();
    await shot(page, 'bull-board');
    await noTokenIn(page);
    assert.deepEqual(problems, [], 'no CSP violations or script errors on any page');
  });
});
