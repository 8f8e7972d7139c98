// The dashboard in a real headless Chromium (Debian's /usr/bin/chromium, else @sparticuz/chromium's build: see
// helpers/browser.ts; driven by playwright-core) against a real server,
// workers and Redis on 127.0.0.1: log in, see the jobs, trigger a run with parameters from the form, watch its logs arrive
// live, see a validation error, use the form's trigger options (run later, priority, idempotency key, overlap refusal), see
// a timed-out run's outcome, see tokens and workers, the read-only view, Bull Board, and the refusal without a login; the
// operations console: filter the Runs list, a job's charts and schedule in words, retry a failed run from its page (attempt
// rows, timed log lines), a dead worker marked, the Jobs page refreshing itself, pages at 400 px, the favicon.
// Screenshots go to test-artifacts/ (the README's docs/screenshots/ are copies of these).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { osUser } from '../src/cli/common.ts';
import { findBrowser, launchOptions, type TestBrowser } from './helpers/browser.ts';
import { runCli } from './helpers/cli.ts';
import { jobscopeFixture, until, type Fixture } from './helpers/fixture.ts';
import { ROOT } from './helpers/runtime.ts';
import { ADMIN, JWT_LIKE, VIEWER, type TestServer } from './helpers/server.ts';

const ARTIFACTS = path.join(ROOT, 'test-artifacts');

let browser: TestBrowser;

let fx: Fixture;
let srv: TestServer;
const contexts: { context: BrowserContext; dataDir: string }[] = [];
/** Console messages and failed requests to other origins, from every page: the pages must need nothing from outside. */
const problems: string[] = [];
/** The confirmation dialogs the pages asked (their text), and how to answer the next ones. */
const dialogs: string[] = [];
let acceptDialogs = true;

async function open(credentials?: { user: string; password: string }): Promise<Page> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'jobscope-chromium-'));
  const context = await chromium.launchPersistentContext(dataDir, {
    ...launchOptions(browser),
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
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    void (acceptDialogs ? dialog.accept() : dialog.dismiss());
  });
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
  browser = await findBrowser();
  // Which browser ran (and, the first time, how long the npm build took to unpack) is in the test output.
  console.log(`browser: ${browser.source} ${browser.executablePath}${browser.unpackMs ? ` (unpacked in ${browser.unpackMs} ms)` : ''}`);
  mkdirSync(ARTIFACTS, { recursive: true });
  fx = await jobscopeFixture({
    jobs: {
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
      // A full copy greets someone too: a child run (the parent and children links of the Run page).
      async run(ctx) {
        if (ctx.data.full) await ctx.trigger('greet', { name: 'child', times: 1 });
        return { count: 3 };
      },
    };`,
      'nightly-report.ts': `export default {
      description: 'Build the nightly report (cron, Asia/Shanghai)',
      schedule: { cron: '0 30 2 * * *', tz: 'Asia/Shanghai' },
      params: { type: 'object', properties: { days: { type: 'integer', minimum: 1, maximum: 31, default: 1 } }, additionalProperties: false },
      token: { audience: ['system'], scope: ['report:read'] },
      overlap: 'skip',
      async run(ctx) {
        await ctx.progress(40);
        await new Promise((resolve, reject) => {
          const t = setTimeout(resolve, 4000);
          ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); });
        });
        return { days: ctx.data.days };
      },
    };`,
      'fickle.ts': `export default {
      description: 'Fails its first attempt, succeeds when retried',
      token: { audience: ['system'], scope: ['fickle:run'] },
      async run(ctx) {
        await ctx.log('attempt ' + ctx.run.attempt + ' starts');
        if (ctx.run.attempt === 1) throw new Error('the first attempt always fails');
        await ctx.log('attempt ' + ctx.run.attempt + ' worked');
        return { attempt: ctx.run.attempt };
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
    },
    env: { JOBSCOPE_PREFIX: 'ui' },
    workers: true,
    schedules: true,
    server: true,
  });
  srv = fx.server;
});

after(async () => {
  for (const { context, dataDir } of contexts) {
    await context.close().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  }
  await fx?.close();
});

/** What a job's queue holds in these states, as GET /api/jobs/:name counts it. */
async function held(name: string, states = ['waiting', 'active', 'completed', 'failed']): Promise<number> {
  const { counts } = await fx.api.job(name);
  return states.reduce((sum, k) => sum + (counts[k] as number), 0);
}

/** Is the job paused, as GET /api/jobs/:name says? */
async function isPaused(name: string): Promise<boolean> {
  return (await fx.api.job(name)).paused as boolean;
}

/** The runs the admin starts from the Run-now form, through the API: trigger 'manual', by user:admin. */
function triggerManual(job: string, data: unknown = {}): Promise<string> {
  return fx.api.trigger(job, data, { trigger: 'manual' });
}

/** Is a token of this run live, as GET /api/tokens lists them? */
async function tokenOf(runId: string): Promise<boolean> {
  return (await fx.api.tokens()).some((t) => t.run === runId);
}

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
    assert.deepEqual(rows, ['fickle', 'greet', 'hang', 'nightly-report', 'sync-dict']);
    const nightly = page.locator('tr[data-job="nightly-report"]');
    assert.match((await nightly.textContent()) ?? '', /Build the nightly report/);
    assert.match((await nightly.textContent()) ?? '', /cron 0 30 2 \* \* \* \(Asia\/Shanghai\)/);
    assert.equal(await nightly.locator('ul.next li').count(), 3, 'next fire times');
    assert.match((await page.locator('tr[data-job="sync-dict"]').textContent()) ?? '', /every 1h/);
    assert.match((await page.locator('tr[data-job="greet"]').textContent()) ?? '', /manual.*active.*never/s);
    assert.equal(await page.locator('button[data-action="pause"]').count(), 5);
    // The cron in words, next to the expression.
    assert.match((await nightly.locator('.words').textContent()) ?? '', /At 02:30/);
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
    const text = (await logs.locator('.text').allTextContents()).join('\n');
    assert.match(text, /line 1: HELLO ADA\nline 2: HELLO ADA\nline 3: HELLO ADA/);
    // Each line with the time it was logged and its attempt.
    const times = await logs.locator('.log-line time').evaluateAll((els) => els.map((e) => e.getAttribute('datetime')));
    assert.ok(times.length >= 4 && times.every((t) => t && !Number.isNaN(Date.parse(t))), JSON.stringify(times));
    assert.deepEqual(new Set(await logs.locator('.log-line .att').allTextContents()), new Set(['#1']));
    assert.match(text, /token \[redacted/, 'the token the job logged was scrubbed');
    assert.deepEqual(JSON.parse((await page.locator('#run-result').textContent()) ?? ''), { greeted: 'Ada', times: 3 });
    assert.deepEqual(JSON.parse((await page.locator('#run-data').textContent()) ?? ''), { name: 'Ada', times: 3, loud: true });
    // After the run its token is revoked: the claims stay, marked as no longer live.
    await until(async () => /revoked or expired/.test((await page.locator('table.claims').textContent()) ?? ''), 5000, 'the revoked mark');
    const claims = await page.locator('table.claims tbody tr').count();
    assert.equal(claims, 1);
    const run = await fx.run(runId);
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
    const before = await held('greet');
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
    assert.equal(await held('greet'), before);
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
    const run = await fx.run(runId);
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
    const blocking = await triggerManual('nightly-report', { days: 1 });
    const skip = await runForm(page, 'nightly-report');
    await skip.locator('button[type="submit"]').click();
    const refused = skip.locator('p.answer.refused');
    await refused.waitFor();
    assert.match((await refused.textContent()) ?? '', /overlap: 'skip'/);
    assert.equal(await refused.locator('a').getAttribute('href'), `run.html?id=${encodeURIComponent(blocking)}`);
    await fx.client.cancel(blocking);
    await fx.client.cancel(runId);
  });

  test('a run that timed out shows the outcome timeout, not a plain failure, on the Run and Jobs pages', async () => {
    const runId = await triggerManual('hang');
    await fx.wait(runId);
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
    const runId = await triggerManual('nightly-report', { days: 2 });
    await until(() => tokenOf(runId), 5000, 'the run token');
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/tokens.html`);
    const row = page.locator('table.tokens tbody tr', { hasText: runId });
    await row.waitFor();
    assert.match((await row.textContent()) ?? '', /nightly-report.*system.*report:read/s);
    await shot(page, 'tokens');
    await noTokenIn(page);
    await fx.client.cancel(runId);
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

  test('the Runs page lists every job’s runs and filters them by outcome, job, trigger and who triggered', async () => {
    // A few more runs to filter: another timeout, a manual run by the admin through the API, a run by a CLI user (the
    // real `jobscope trigger`: by cli:<os user>).
    const timedOut = await triggerManual('hang');
    const cli = await runCli(['trigger', 'sync-dict'], {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      REDIS_URL: fx.redisUrl,
      JOBSCOPE_PREFIX: 'ui',
      JOBSCOPE_JOBS: fx.dir,
      JOBSCOPE_STATE_DIR: path.join(ROOT, '.jobscope', 'test-tmp', 'state'),
      LOG_LEVEL: 'warn',
    });
    assert.equal(cli.code, 0, cli.stderr);
    const fromCli = (JSON.parse(cli.stdout) as { runId: string }).runId;
    await fx.wait(timedOut);
    await fx.wait(fromCli);
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/runs.html`);
    const rows = page.locator('table.runs tbody tr');
    await rows.first().waitFor();
    assert.ok((await rows.count()) >= 4, 'runs of several jobs');
    const jobsListed = new Set(await rows.locator('td:nth-child(2)').allTextContents());
    assert.ok(jobsListed.has('hang') && jobsListed.has('greet') && jobsListed.has('sync-dict'), [...jobsListed].join(','));
    await shot(page, 'runs');

    const filter = async (values: Record<string, string>) => {
      for (const [name, value] of Object.entries(values)) {
        const input = page.locator(`form.filters [name="${name}"]`);
        if ((await input.evaluate((el) => el.tagName)) === 'SELECT') await input.selectOption(value);
        else await input.fill(value);
      }
      const before = await page.locator('#runs-list').innerHTML();
      await page.locator('form.filters button[type="submit"]').click();
      await until(async () => (await page.locator('#runs-list').innerHTML()) !== before, 5000, 'the filtered list');
    };
    await filter({ state: 'timeout' });
    assert.match(page.url(), /runs\.html\?state=timeout$/);
    const outcomes = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-outcome')));
    assert.ok(outcomes.length >= 2 && outcomes.every((o) => o === 'timeout'), outcomes.join(','));
    assert.ok(await page.locator(`tr[data-run="${timedOut}"]`).count(), 'the new timeout is listed');

    await filter({ state: '', job: 'sync-dict', by: `cli:${osUser()}` });
    assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-run'))), [fromCli]);
    await filter({ job: '', by: '', trigger: 'manual', state: 'completed' });
    const manual = await rows.evaluateAll((trs) => trs.map((tr) => [tr.children[3].textContent, tr.getAttribute('data-outcome')]));
    assert.ok(manual.length >= 1 && manual.every(([t, o]) => t === 'manual' && o === 'completed'), JSON.stringify(manual));
    await filter({ trigger: '', state: '', by: 'user:nobody' });
    await page.locator('#no-runs').waitFor();
    await shot(page, 'runs-filtered');
    await noTokenIn(page);
  });

  test('a job’s page: success-rate and duration charts per hour and per day, cron in words, next fires in its time zone, pause and resume', async () => {
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/`);
    await page.locator('tr[data-job="greet"] a[href="job.html?name=greet"]').click();
    await page.waitForURL(/job\.html\?name=greet$/);
    for (const chart of ['hourly-rate', 'hourly-duration', 'daily-rate', 'daily-duration']) {
      await page.locator(`#chart-${chart} canvas`).waitFor();
    }
    assert.match((await page.locator('#stats-summary').textContent()) ?? '', /From the [1-9]\d* finished run/);
    assert.match((await page.locator('#chart-hourly-rate').textContent()) ?? '', /Success rate per hour/);
    assert.ok(await page.locator('#job-runs table.runs tbody tr').count(), 'recent runs');
    assert.ok(await page.locator('form.run-form[data-job="greet"]').count(), 'the Run-now form');
    await shot(page, 'job');

    await page.goto(`${srv.url}/dashboard/job.html?name=nightly-report`);
    assert.match((await page.locator('#job-words').textContent()) ?? '', /At 02:30/);
    assert.match((await page.locator('#job-schedule').textContent()) ?? '', /time zone Asia\/Shanghai/);
    const fires = await page.locator('#job-next li').allTextContents();
    assert.equal(fires.length, 5);
    for (const f of fires) assert.match(f, /\d{4}-\d\d-\d\d 02:30:00 Asia\/Shanghai/);
    await page.locator('#job-head button[data-action="pause"]').click();
    assert.match(dialogs.at(-1) ?? '', /^Pause nightly-report\?/, 'Pause asks first');
    await page.locator('#job-head .badge.paused').waitFor();
    assert.equal(await isPaused('nightly-report'), true);
    await page.locator('#job-head button[data-action="resume"]').click();
    await page.locator('#job-head .badge.active-job').waitFor();
    assert.equal(await isPaused('nightly-report'), false);
    await page.locator('#chart-daily-rate canvas').waitFor();
  });

  test('the Run page of a failed run: one row per attempt, Retry, and the retried attempt arriving live with timed log lines', async () => {
    const runId = await triggerManual('fickle');
    await fx.wait(runId);
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/run.html?id=${encodeURIComponent(runId)}`);
    await until(async () => (await page.locator('#run-state').textContent())?.trim() === 'failed', 5000, 'the failed run');
    const attempts = page.locator('table.attempts tbody tr');
    assert.equal(await attempts.count(), 1);
    assert.match((await attempts.first().textContent()) ?? '', /failed.*the first attempt always fails.*system/s);
    assert.match((await page.locator('#run-by').textContent()) ?? '', /user:admin/);
    // The reader selects a log line: the refreshes that follow leave the selection alone.
    await page.locator('#run-logs .text').first().selectText();
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(await page.evaluate(() => document.getSelection()?.toString()), 'attempt 1 starts');

    await page.locator('button[data-action="retry"]').click();
    assert.match(dialogs.at(-1) ?? '', /^Retry run /, 'Retry asks first');
    await page.locator('#run-retried-by').waitFor();
    assert.match((await page.locator('#run-retried-by').textContent()) ?? '', /user:admin/);
    await until(
      async () => (await page.locator('#run-state').textContent())?.trim() === 'completed',
      15_000,
      'the retried run to complete',
    );
    await until(async () => (await attempts.count()) === 2, 5000, 'the second attempt row');
    const cells = await attempts.evaluateAll((trs) => trs.map((tr) => [tr.getAttribute('data-attempt'), tr.getAttribute('data-outcome')]));
    assert.deepEqual(cells, [
      ['1', 'failed'],
      ['2', 'completed'],
    ]);
    await until(async () => (await page.locator('#run-logs .log-line').count()) >= 4, 5000, 'the second attempt’s log lines');
    const lines = await page
      .locator('#run-logs .log-line')
      .evaluateAll((els) =>
        els.map((e) => [
          e.querySelector('.att')?.textContent,
          e.querySelector('.text')?.textContent,
          e.querySelector('time')?.getAttribute('datetime'),
        ]),
      );
    const byText = new Map(lines.map(([att, text, t]) => [text, { att, t }]));
    assert.equal(byText.get('attempt 1 starts')?.att, '#1');
    assert.equal(byText.get('attempt 2 worked')?.att, '#2');
    assert.match(byText.get('attempt 2 worked')?.t ?? '', /^\d{4}-\d\d-\d\dT/);
    assert.ok(
      lines.some(([, text]) => text === 'retried by user:admin'),
      'who retried is logged on the run',
    );
    assert.equal(await page.locator('button[data-action="retry"]').count(), 0, 'a completed run has no Retry button');
    // The first attempt's error stays on its attempt row, and is not the completed run's error anywhere.
    assert.match((await attempts.first().textContent()) ?? '', /the first attempt always fails/);
    assert.equal(await page.locator('#run-error').count(), 0, 'no Error section on a completed run');
    await shot(page, 'run-retried');
    await noTokenIn(page);
    for (const list of [`job.html?name=fickle`, `runs.html?job=fickle`]) {
      await page.goto(`${srv.url}/dashboard/${list}`);
      const row = page.locator(`table.runs tr[data-run="${runId}"]`);
      await row.waitFor();
      assert.equal(await row.getAttribute('data-outcome'), 'completed', list);
      assert.equal((await row.locator('td.error').textContent())?.trim(), '', `${list}: no error beside the completed run`);
    }
  });

  test('a child run links to its parent and the parent to its children', async () => {
    // A full sync-dict starts a greet run (ctx.trigger) before it completes.
    const parent = await triggerManual('sync-dict', { full: true });
    await fx.wait(parent);
    const [child] = (await fx.run(parent)).children;
    assert.ok(child, 'the parent started a child');
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/run.html?id=${encodeURIComponent(child)}`);
    await page.locator('#run-parent a').waitFor();
    assert.equal(await page.locator('#run-parent a').getAttribute('href'), `run.html?id=${encodeURIComponent(parent)}`);
    assert.match((await page.locator('#run-by').textContent()) ?? '', new RegExp(`run ${parent}`));
    await page.locator('#run-parent a').click();
    await page.locator('#run-children a').waitFor();
    assert.equal(await page.locator('#run-children a').getAttribute('href'), `run.html?id=${encodeURIComponent(child)}`);
    await fx.wait(child);
  });

  test('the Workers page lists the worker processes from their heartbeats and marks a dead one', async () => {
    const lastSeen = new Date(Date.now() - 5 * 60_000).toISOString();
    const dead = {
      id: 'gone-host:4242:deadbeef',
      host: 'gone-host',
      pid: 4242,
      versions: { jobscope: '0.1.0', node: 'v20.20.2' },
      groups: ['reports'],
      jobs: ['nightly-report'],
      active: [],
      startedAt: new Date(Date.now() - 3600_000).toISOString(),
      lastSeen,
    };
    // A heartbeat planted in the registry's hash on purpose (no process can be made to die here): the fixture's connection.
    await fx.redis.hset('ui:workers', dead.id, JSON.stringify(dead));
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/workers.html`);
    const row = page.locator(`tr[data-worker="${dead.id}"]`);
    await row.waitFor();
    assert.match((await row.getAttribute('class')) ?? '', /\bdead\b/);
    assert.equal((await row.locator('.badge').textContent())?.trim(), 'dead');
    assert.match((await row.textContent()) ?? '', /gone-host.*4242.*reports.*nightly-report/s);
    const alive = page.locator('table.registry tr.alive');
    assert.equal(await alive.count(), 1, 'this process');
    assert.match((await alive.textContent()) ?? '', new RegExp(`${process.pid}.*jobscope .*node ${process.version}`, 's'));
    await shot(page, 'workers');
    await fx.redis.hdel('ui:workers', dead.id);
  });

  test('the Jobs page refreshes by itself', async () => {
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/`);
    const cell = page.locator('tr[data-job="sync-dict"] td.num.ok');
    await cell.waitFor();
    const before = Number(await cell.textContent());
    const runId = await fx.api.trigger('sync-dict');
    await fx.wait(runId);
    await until(async () => Number(await cell.textContent()) === before + 1, 12_000, 'the new count without a reload');
  });

  test('the overview above the jobs: runs by outcome, success rate, jobs failing now with links, workers, live tokens, runs per hour', async () => {
    // hang's last run times out (failing now); greet's last run completes (not failing).
    const timedOut = await triggerManual('hang');
    await fx.wait(timedOut);
    const greeted = await triggerManual('greet', { name: 'overview', times: 1 });
    await fx.wait(greeted);
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/`);
    const overview = page.locator('#overview');
    await overview.locator('#ov-24h [data-stat="finished"]').waitFor();
    // Above the jobs table.
    const [ovTop, jobsTop] = await Promise.all([overview.boundingBox(), page.locator('table.jobs').boundingBox()]);
    assert.ok(ovTop && jobsTop && ovTop.y < jobsTop.y, 'the overview comes first');

    // The figures, against Redis's finished sets counted here (the run history a test can see independently), on the
    // fixture's own connection.
    const client = fx.redis;
    const count = async (since: number) => {
      let completed = 0;
      let failed = 0;
      for (const job of ['fickle', 'greet', 'hang', 'nightly-report', 'sync-dict']) {
        completed += await client.zcount(`ui:${job}:completed`, since, '+inf');
        failed += await client.zcount(`ui:${job}:failed`, since, '+inf');
      }
      return { completed, failed };
    };
    const day = await count(Date.now() - 86_400_000);
    const stat = (tile: string, name: string) => overview.locator(`#${tile} [data-stat="${name}"]`);
    await until(
      async () => Number(await stat('ov-24h', 'finished').textContent()) === day.completed + day.failed,
      10_000,
      'the 24 h count',
    );
    const rate = Math.floor((day.completed / (day.completed + day.failed)) * 1000) / 10;
    assert.equal(await stat('ov-24h', 'success-rate').textContent(), `${rate.toFixed(1)}%`);
    assert.equal(Number(await overview.locator('#ov-24h li[data-outcome="completed"] .num').textContent()), day.completed);
    assert.ok(Number(await overview.locator('#ov-24h li[data-outcome="timeout"] .num').textContent()) >= 1, 'timeouts told apart');
    assert.ok(Number(await stat('ov-7d', 'finished').textContent()) >= day.completed + day.failed);
    assert.equal(await stat('ov-fleet', 'jobs').textContent(), '5');
    const workers = (await srv.request('/api/workers', { auth: ADMIN })).body as { alive: boolean }[];
    assert.equal(Number(await stat('ov-fleet', 'workers-alive').textContent()), workers.filter((w) => w.alive).length);
    assert.equal(Number(await stat('ov-fleet', 'workers-dead').textContent()), workers.filter((w) => !w.alive).length);

    // Failing now: hang, linked to its job and to the run that timed out; greet is not there.
    const hang = overview.locator('#ov-failing li[data-job="hang"]');
    await hang.waitFor();
    assert.equal(await hang.locator('[data-outcome]').textContent(), 'timeout');
    assert.equal(await hang.locator('a[href^="job.html"]').getAttribute('href'), 'job.html?name=hang');
    assert.equal(await hang.locator('a[href^="run.html"]').getAttribute('href'), `run.html?id=${encodeURIComponent(timedOut)}`);
    assert.equal(await overview.locator('#ov-failing li[data-job="greet"]').count(), 0);

    // Runs per hour: a uPlot chart with its two series.
    await overview.locator('#chart-runs-hourly canvas').first().waitFor();
    assert.match((await overview.locator('#chart-runs-hourly').textContent()) ?? '', /Runs per hour.*completed.*failed/s);
    // uPlot's stylesheet is on the page: the legend sits below the plot, not over it.
    const [plotBox, legendBox] = await Promise.all([
      overview.locator('#chart-runs-hourly .u-over').boundingBox(),
      overview.locator('#chart-runs-hourly .u-legend').boundingBox(),
    ]);
    assert.ok(
      plotBox && legendBox && legendBox.y >= plotBox.y + plotBox.height,
      `legend ${JSON.stringify(legendBox)} over ${JSON.stringify(plotBox)}`,
    );

    // Live tokens while a run holds one (the page opened while it does), then, refreshing by itself, one more finished
    // run and no live token once it is done.
    const live = await triggerManual('greet', { name: 'tokens', times: 5 });
    await until(() => tokenOf(live), 10_000, 'its token');
    await page.reload();
    await until(async () => Number(await stat('ov-fleet', 'live-tokens').textContent()) >= 1, 5000, 'a live token');
    const before = Number(await stat('ov-24h', 'finished').textContent());
    await shot(page, 'overview');
    await fx.wait(live);
    await until(async () => Number(await stat('ov-24h', 'finished').textContent()) === before + 1, 12_000, 'the new run counted');
    await until(async () => Number(await stat('ov-fleet', 'live-tokens').textContent()) === 0, 12_000, 'no live token');
    await noTokenIn(page);
  });

  test('every page fits a 400 px wide screen, and carries the favicon', async () => {
    const page = await open(ADMIN);
    await page.setViewportSize({ width: 400, height: 800 });
    const runId = await triggerManual('greet', { name: 'narrow', times: 1 });
    await fx.wait(runId);
    const pages: [string, string][] = [
      ['', '#chart-runs-hourly canvas'],
      ['runs.html', 'table.runs'],
      ['job.html?name=greet', '#chart-daily-rate canvas'],
      [`run.html?id=${encodeURIComponent(runId)}`, 'table.attempts'],
      ['workers.html', 'table.registry'],
      ['tokens.html', 'h1'],
    ];
    for (const [path, ready] of pages) {
      await page.goto(`${srv.url}/dashboard/${path}`);
      await page.locator(ready).first().waitFor();
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 400, `${path || 'index'} is ${width} px wide`);
      assert.equal(await page.locator('link[rel="icon"]').getAttribute('href'), 'favicon.svg');
      if (path === '') await shot(page, 'jobs-400px');
      if (path.startsWith('run.html')) await shot(page, 'run-400px');
    }
    const icon = await page.goto(`${srv.url}/dashboard/favicon.svg`);
    assert.equal(icon?.status(), 200);
    assert.match(icon?.headers()['content-type'] ?? '', /image\/svg\+xml/);
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

describe('requests from another origin, while logged in', () => {
  test('a page on another origin auto-submitting text/plain forms (and a no-cors fetch) to the API is refused: nothing enqueued, nothing paused', async () => {
    const { createServer } = await import('node:http');
    // The attacker's pages, on 127.0.0.1 with another port: same site for the browser (Sec-Fetch-Site: same-site), another origin.
    // The run form's body is valid JSON for a lenient server: {"data":{},"trigger":"manual","key":"="}.
    const attack: Record<string, string> = {
      '/runs.html': `<!doctype html><form method="post" enctype="text/plain" action="${srv.url}/api/jobs/sync-dict/runs">
        <input type="hidden" name='{"data":{},"trigger":"manual","key":"' value='"}'></form>
        <script>fetch(${JSON.stringify(`${srv.url}/api/jobs/sync-dict/runs`)}, { method: 'POST', mode: 'no-cors', credentials: 'include',
          headers: { 'content-type': 'text/plain' }, body: '{"data":{}}' }).catch(() => {}).finally(() => document.forms[0].submit());</script>`,
      '/pause.html': `<!doctype html><form method="post" enctype="text/plain" action="${srv.url}/api/jobs/sync-dict/pause">
        <input type="hidden" name="x" value="y"></form><script>document.forms[0].submit()</script>`,
      '/read.html': `<!doctype html><script>location.href = ${JSON.stringify(`${srv.url}/api/jobs`)}</script>`,
      '/board.html': `<!doctype html><form method="post" enctype="text/plain" action="${srv.url}/dashboard/queues/api/queues/sync-dict/add">
        <input type="hidden" name='{"name":"x","data":{},"pad":"' value='"}'></form><script>document.forms[0].submit()</script>`,
    };
    const evil = createServer((req, res) => {
      const page = attack[req.url ?? ''];
      res.writeHead(page ? 200 : 404, { 'content-type': 'text/html' }).end(page ?? '');
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    const evilUrl = `http://127.0.0.1:${(evil.address() as import('node:net').AddressInfo).port}`;
    try {
      // The job's BullMQ queue itself (the fixture's connection): every id in it, whatever made it, and its scheduler entry.
      const queue = fx.queue('sync-dict');
      // The runs of sync-dict by id, but those its schedule makes (repeat:...): a run the attack created would be a new id.
      const ids = async () =>
        (await queue.getJobs(['waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized', 'waiting-children']))
          .map((j) => j.id!)
          .filter((id) => !id.startsWith('repeat:'))
          .sort();
      const before = await ids();
      const page = await open(ADMIN);
      // Logged in: the browser has answered jobscope's Basic challenge, and answers it by itself from any page (read.html).
      assert.equal((await page.goto(`${srv.url}/dashboard/`))?.status(), 200);
      // Every POST the attacker's pages make to jobscope, with how it ended: the answer, or why the browser dropped it.
      const posts: { request: import('playwright-core').Request; status?: number; body?: string; failure?: string }[] = [];
      const ended = () => posts.filter((p) => p.status !== undefined || p.failure !== undefined).length;
      page.context().on('request', (request) => {
        if (request.url().startsWith(srv.url) && request.method() === 'POST') posts.push({ request });
      });
      page.context().on('requestfinished', async (request) => {
        const post = posts.find((p) => p.request === request);
        const response = await request.response();
        // The body now: once the page navigates on, it is gone.
        if (post) [post.body, post.status] = [await response?.text().catch(() => undefined), response?.status()];
      });
      page.context().on('requestfailed', (request) => {
        const post = posts.find((p) => p.request === request);
        if (post) post.failure = request.failure()?.errorText ?? 'failed';
      });
      for (const [name, expected] of [
        ['/runs.html', 2],
        ['/pause.html', 3],
        ['/board.html', 4],
      ] as const) {
        await page.goto(`${evilUrl}${name}`);
        await until(() => ended() >= expected, 10_000, `the requests of ${name}`);
      }
      // The control: from the attacker's page the browser still reaches jobscope logged in, so only the guard stops the POSTs.
      const read = page.waitForResponse((r) => r.url() === `${srv.url}/api/jobs` && r.status() !== 401);
      await page.goto(`${evilUrl}/read.html`);
      const readAnswer = await read;
      assert.equal(readAnswer.status(), 200);
      assert.match(await readAnswer.text(), /"name":"sync-dict"/);
      assert.deepEqual(
        posts.map((p) => [p.request.resourceType(), new URL(p.request.url()).pathname]),
        [
          ['fetch', '/api/jobs/sync-dict/runs'],
          ['document', '/api/jobs/sync-dict/runs'],
          ['document', '/api/jobs/sync-dict/pause'],
          ['document', '/dashboard/queues/api/queues/sync-dict/add'],
        ],
      );
      for (const { request, status, body: text, failure } of posts) {
        assert.equal((await request.allHeaders()).origin, evilUrl);
        if (request.resourceType() === 'document') {
          assert.equal(status, 403, request.url());
          const body = JSON.parse(text ?? '{}');
          assert.equal(body.error, 'cross_site');
          // What the browser said about where the request came from, as the server read it.
          assert.match(body.message, /Sec-Fetch-Site: same-site/);
        } else {
          // The no-cors fetch: the server's 403 reaches the browser, which then withholds it from the other origin
          // (Cross-Origin-Resource-Policy: same-origin); either way the page learns nothing and nothing happened.
          assert.ok(status === 403 || /ERR_BLOCKED_BY_RESPONSE/.test(failure ?? ''), `${status} ${failure}`);
        }
      }
      assert.deepEqual(await ids(), before, 'nothing enqueued');
      assert.equal(await isPaused('sync-dict'), false, 'not paused');
      assert.ok(await queue.getJobScheduler('sync-dict'), 'the schedule is still there');
    } finally {
      evil.closeAllConnections();
      await new Promise<void>((resolve) => evil.close(() => resolve()));
    }
  });

  test('Bull Board renders with system fonts: no web-font link, no font loaded, nothing asked of another site', async () => {
    const page = await open(ADMIN);
    const outside: string[] = [];
    page.context().on('request', (r) => {
      if (new URL(r.url()).hostname !== '127.0.0.1') outside.push(r.url());
    });
    const res = await page.goto(`${srv.url}/dashboard/queues/`);
    assert.equal(res?.status(), 200);
    const csp = res?.headers()['content-security-policy'] ?? '';
    assert.doesNotMatch(csp, /fonts\.googleapis|fonts\.gstatic/);
    assert.match(csp, /font-src 'self' data:/);
    await page.getByText('sync-dict').first().waitFor();
    assert.equal(await page.locator('link[href*="fonts.googleapis"], link[href*="fonts.gstatic"]').count(), 0);
    assert.doesNotMatch(await res!.text(), /fonts\.googleapis/, 'the served page has no link to it either');
    const fonts = await page.evaluate(async () => {
      await document.fonts.ready;
      return { faces: document.fonts.size, family: getComputedStyle(document.body).fontFamily };
    });
    assert.equal(fonts.faces, 0, 'no web font in the document');
    assert.match(fonts.family, /system-ui/, fonts.family);
    // A change from Bull Board's own page passes the guard (same origin), as its buttons' requests do.
    const paused = await page.evaluate(async () => (await fetch('api/queues/sync-dict/pause', { method: 'PUT' })).status);
    assert.equal(paused, 200);
    assert.equal(await isPaused('sync-dict'), true);
    assert.equal(await page.evaluate(async () => (await fetch('api/queues/sync-dict/resume', { method: 'PUT' })).status), 200);
    assert.deepEqual(outside, [], 'no request left 127.0.0.1');
    assert.deepEqual(problems, [], 'no CSP violations or script errors on any page');
  });

  test('the Run page: no stale placeholder, progress shown, Cancel asks and a dismissed Cancel changes nothing', async () => {
    const page = await open(ADMIN);
    // greet logs its first line after a second: the page shows the placeholder, then the lines, never both.
    const greet = await triggerManual('greet', { name: 'ada', times: 2 });
    await page.goto(`${srv.url}/dashboard/run.html?id=${encodeURIComponent(greet)}`);
    await page.locator('#run-logs .empty').waitFor();
    await page.locator('#run-logs .log-line').first().waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#run-logs .empty').count(), 0, 'the placeholder is gone once a line is shown');
    await fx.wait(greet);

    // nightly-report sets ctx.progress(40) and then waits 4 s.
    const report = await triggerManual('nightly-report');
    await page.goto(`${srv.url}/dashboard/run.html?id=${encodeURIComponent(report)}`);
    await page.locator('#run-progress').waitFor({ timeout: 10_000 });
    assert.match((await page.locator('#run-progress').textContent()) ?? '', /40%/);
    assert.equal(await page.locator('#run-progress progress').getAttribute('value'), '40');

    acceptDialogs = false;
    await page.locator('button[data-action="cancel"]').click();
    assert.match(dialogs.at(-1) ?? '', /^Cancel run /);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await fx.run(report)).state, 'active', 'a dismissed Cancel cancels nothing');
    acceptDialogs = true;
    await page.locator('button[data-action="cancel"]').click();
    const done = await fx.wait(report);
    assert.equal(done.outcome, 'cancelled');
    assert.match(done.error ?? '', /cancelled by admin from the dashboard/);
  });

  test('Log out: the page says so, and the next page asks for a login again', async () => {
    const page = await open(ADMIN);
    await page.goto(`${srv.url}/dashboard/`);
    await page.locator('#logout').click();
    await page.locator('h1', { hasText: 'Logged out' }).waitFor();
    assert.equal(await page.locator('#logout').count(), 0);
    const logout = await page.evaluate(async () => (await fetch('/logout', { headers: { authorization: 'Basic bG9nb3V0Ong=' } })).status);
    assert.equal(logout, 401);
  });
});
