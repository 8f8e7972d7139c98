// The Jobs page (/dashboard/): the overview of the fleet, then every job with its Run-now form, recent runs and Pause.
import { api, isAdmin } from '../lib/api.js';
import { h, show, tableWrap, thead } from '../lib/dom.js';
import { limitsText, when } from '../lib/format.js';
import { everyAfter, failure } from '../lib/live.js';
import { jobBadge, jobLink, openRun, pauseButton, runBadge, runLink, scheduleCell, tokenText } from '../lib/views.js';

const OUTCOMES = ['completed', 'failed', 'timeout', 'cancelled', 'skipped', 'misfire'];

/** Finished runs of one window by outcome, as a tile: how many, the success rate, and each outcome that happened. */
function windowTile(id, title, c) {
  const rate = c.successRate === null ? '–' : `${(Math.floor(c.successRate * 1000) / 10).toFixed(1)}%`;
  const parts = OUTCOMES.filter((o) => c[o] > 0 || o === 'completed' || o === 'failed').map((o) =>
    h('li', { 'data-outcome': o }, h('span', { class: `badge outcome-${o}` }, o), ' ', h('span', { class: 'num' }, c[o])),
  );
  return h(
    'section',
    { class: 'tile', id },
    h('h3', {}, title),
    h('p', { class: 'big' }, h('span', { 'data-stat': 'finished' }, c.finished), ' runs'),
    h('p', {}, 'success rate ', h('strong', { 'data-stat': 'success-rate' }, rate)),
    h('ul', { class: 'outcomes' }, parts),
  );
}

/** Jobs, workers alive and dead, live tokens. */
function fleetTile(o) {
  return h(
    'section',
    { class: 'tile', id: 'ov-fleet' },
    h('h3', {}, 'Fleet'),
    h(
      'p',
      { class: 'big' },
      h('span', { 'data-stat': 'jobs' }, o.jobs),
      ' jobs',
      o.paused ? h('span', { class: 'muted' }, ` (${o.paused} paused)`) : null,
    ),
    h(
      'p',
      {},
      h('a', { href: 'workers.html' }, 'workers'),
      ' ',
      h('strong', { 'data-stat': 'workers-alive', class: 'ok' }, o.workers.alive),
      ' alive · ',
      h('strong', { 'data-stat': 'workers-dead', class: o.workers.dead ? 'bad' : '' }, o.workers.dead),
      ' dead',
    ),
    h('p', {}, h('a', { href: 'tokens.html' }, 'live tokens'), ' ', h('strong', { 'data-stat': 'live-tokens' }, o.liveTokens)),
  );
}

/** The jobs whose last finished run did not complete. */
function failingNow(failing) {
  const item = (r) =>
    h(
      'li',
      { 'data-job': r.job },
      h('strong', {}, jobLink(r.job)),
      ' ',
      runBadge(r),
      ' ',
      runLink(r.runId, when(r.finishedAt)),
      r.error ? h('div', { class: 'error small' }, r.error) : null,
    );
  return [
    h('h3', {}, 'Failing now'),
    failing.length
      ? h('ul', { class: 'failing' }, failing.map(item))
      : h('p', { class: 'muted', id: 'ov-none-failing' }, 'No job is failing: every job’s last finished run completed.'),
  ];
}

/** Runs per hour (48 h): drawn once (lib/chart.js is loaded then), then given new data when the counts change. */
function hourlyChart(el) {
  let plot = null;
  let drawn = '';
  return async (hourly) => {
    const key = JSON.stringify(hourly);
    if (key === drawn) return;
    drawn = key;
    const xs = hourly.map((b) => Date.parse(b.start) / 1000);
    const data = [xs, hourly.map((b) => b.completed), hourly.map((b) => b.failed)];
    if (plot) return plot.setData(data);
    const series = [
      { label: 'completed', color: '#1f8a4c', values: data[1] },
      { label: 'failed', color: '#c0392b', values: data[2] },
    ];
    const { chart } = await import('../lib/chart.js');
    plot = await chart(el, 'Runs per hour (48 h)', xs, series, 'runs');
  };
}

/**
 * The fleet at a glance, above the jobs table: runs by outcome in the last 24 h and 7 days, workers alive and dead, live
 * tokens, the jobs failing now (their last run did not complete) and runs per hour. GET /api/overview, every 5 s.
 */
function overviewSection() {
  const el = h('section', { id: 'overview', 'aria-label': 'Overview' });
  const tiles = h('div', { class: 'tiles' });
  const failing = h('div', { id: 'ov-failing' });
  const chartBox = h('div', { class: 'chart', id: 'chart-runs-hourly' });
  el.append(h('h1', {}, 'Overview'), tiles, h('div', { class: 'columns' }, failing, chartBox));
  const drawHourly = hourlyChart(chartBox);
  const render = async () => {
    const o = await api('overview');
    tiles.replaceChildren(windowTile('ov-24h', 'Last 24 hours', o.last24h), windowTile('ov-7d', 'Last 7 days', o.last7d), fleetTile(o));
    failing.replaceChildren(...failingNow(o.failing));
    await drawHourly(o.hourly);
  };
  return { el, render };
}

/** The cells of a job's row; `toggle` opens its detail row. */
function jobCells(job, toggle, render) {
  const last = job.lastRun;
  return [
    h('td', {}, h('strong', {}, jobLink(job.name)), h('div', { class: 'muted' }, job.description)),
    h('td', {}, scheduleCell(job)),
    h('td', {}, jobBadge(job)),
    h(
      'td',
      {},
      last ? [runBadge(last), ' ', runLink(last.runId, when(last.finishedAt || last.createdAt))] : h('span', { class: 'muted' }, 'never'),
    ),
    h('td', { class: 'num ok' }, job.counts.completed ?? 0),
    h('td', { class: 'num bad' }, job.counts.failed ?? 0),
    h(
      'td',
      { class: 'actions' },
      h('button', { type: 'button', onclick: toggle, 'data-action': 'open' }, isAdmin() ? 'Run now…' : 'Details'),
      isAdmin() ? pauseButton(job, render) : null,
    ),
  ];
}

/** A job's detail row: Run now (`form`, for those who may), its recent runs, its token and limits. */
function jobDetail(job, runs, form) {
  const runItem = (r) =>
    h('li', {}, runBadge(r), ' ', runLink(r.runId), ' ', h('span', { class: 'muted' }, r.trigger, ' · ', when(r.createdAt)));
  return h(
    'div',
    { class: 'columns' },
    form ? h('section', {}, h('h3', {}, 'Run now'), form) : null,
    h(
      'section',
      {},
      h('h3', {}, 'Recent runs'),
      runs.length ? h('ul', { class: 'runs' }, runs.map(runItem)) : h('p', { class: 'muted' }, 'no runs yet'),
      h('p', {}, h('a', { href: `job.html?name=${encodeURIComponent(job.name)}` }, `${job.name}: charts, every run, schedule →`)),
      h('h3', {}, 'Token'),
      h('p', {}, tokenText(job)),
      h('p', { class: 'muted' }, `${limitsText(job)}${job.timeoutMs ? ` · timeout ${job.timeoutMs / 1000}s` : ''}`),
    ),
  );
}

/** The jobs table, live: the rows' cells follow the API every 5 s; an open detail row (a form being filled in) is left alone. */
function jobsTable() {
  const rows = new Map();
  const tbody = h('tbody', {});
  let names = '';
  const toggle = async (row) => {
    row.detail.hidden = !row.detail.hidden;
    if (row.detail.hidden) return;
    // The Run-now form's module (lib/forms.js) is loaded the first time a form is shown.
    const [runs, forms] = await Promise.all([
      api(`jobs/${encodeURIComponent(row.job.name)}/runs?limit=10`).catch(() => []),
      isAdmin() ? import('../lib/forms.js') : null,
    ]);
    row.detail.firstChild.replaceChildren(jobDetail(row.job, runs, forms?.paramsForm(row.job, openRun)));
  };
  const newRow = (job) => {
    const row = { job, tr: h('tr', { 'data-job': job.name }), detail: h('tr', { class: 'detail', hidden: true }, h('td', { colspan: 7 })) };
    rows.set(job.name, row);
    tbody.append(row.tr, row.detail);
  };
  const render = async () => {
    const jobs = await api('jobs');
    const now = jobs.map((j) => j.name).join('\n');
    if (now !== names) {
      names = now;
      rows.clear();
      tbody.replaceChildren();
      jobs.forEach(newRow);
    }
    for (const job of jobs) {
      const row = rows.get(job.name);
      row.job = job;
      const key = JSON.stringify(job);
      if (row.key === key) continue;
      row.key = key;
      row.tr.replaceChildren(...jobCells(job, () => toggle(row), render));
    }
  };
  return { tbody, render };
}

export default async function jobsPage() {
  const jobs = jobsTable();
  const errors = h('div', {});
  const overview = overviewSection();
  const overviewErrors = h('div', {});
  const columns = ['Job', 'Schedule (next fire times)', 'State', 'Last run', 'Succeeded', 'Failed', ''];
  show(
    overview.el,
    overviewErrors,
    h('h1', {}, 'Jobs'),
    errors,
    tableWrap(h('table', { class: 'jobs' }, thead(...columns), jobs.tbody)),
    h(
      'p',
      { class: 'muted' },
      'Refreshes every 5 s. Succeeded/failed count the runs Redis still keeps (see each job’s retention). Every run: ',
      h('a', { href: 'runs.html' }, 'Runs'),
      '.',
    ),
  );
  await Promise.all([jobs.render(), overview.render().catch((err) => overviewErrors.replaceChildren(failure(err)))]);
  everyAfter(5000, jobs.render, errors);
  everyAfter(5000, overview.render, overviewErrors);
}
