// The Job page (/dashboard/job.html?name=<job>): schedule, limits, token and retention; Run now; recent runs; charts.
import { api, isAdmin } from '../lib/api.js';
import { Region, facts, h, show } from '../lib/dom.js';
import { LOCAL_TZ, dur, keepText, limitsText } from '../lib/format.js';
import { everyAfter, failure } from '../lib/live.js';
import { jobBadge, nextFires, openRun, pauseButton, runsTable, tokenText } from '../lib/views.js';

/** One pair of charts (success rate, duration p50/p95) over hourly or daily buckets. */
async function drawPair(container, buckets, label) {
  const { chart } = await import('../lib/chart.js');
  const xs = buckets.map((b) => Date.parse(b.start) / 1000);
  const rate = h('div', { class: 'chart', id: `chart-${label}-rate` });
  const durations = h('div', { class: 'chart', id: `chart-${label}-duration` });
  container.append(h('div', { class: 'chart-pair', 'data-chart': label }, rate, durations));
  const success = buckets.map((b) => (b.successRate === null ? null : Math.round(b.successRate * 1000) / 10));
  const seconds = (ms) => (ms === null ? null : ms / 1000);
  const per = label === 'hourly' ? 'hour' : 'day';
  await chart(
    rate,
    `Success rate per ${label === 'hourly' ? 'hour (48 h)' : 'day (30 days)'}`,
    xs,
    [{ label: 'success %', color: '#1f8a4c', values: success }],
    '%',
  );
  await chart(
    durations,
    `Duration per ${per}`,
    xs,
    [
      { label: 'p50', color: '#2f5bd3', values: buckets.map((b) => seconds(b.p50Ms)) },
      { label: 'p95', color: '#c0392b', values: buckets.map((b) => seconds(b.p95Ms)) },
    ],
    's',
  );
}

async function charts(container, name) {
  const stats = await api(`jobs/${encodeURIComponent(name)}/stats?tz=${encodeURIComponent(LOCAL_TZ)}`);
  container.replaceChildren(
    h(
      'p',
      { class: 'muted', id: 'stats-summary' },
      `From the ${stats.runs} finished run(s) Redis keeps (the last 30 days at most); days in ${stats.tz}.`,
    ),
  );
  await drawPair(container, stats.hourly, 'hourly');
  await drawPair(container, stats.daily, 'daily');
}

/** The job's head: name, state, description, Pause/Resume and its facts. */
function jobHead(job, render) {
  return [
    h('h1', {}, job.name, ' ', jobBadge(job)),
    job.description ? h('p', {}, job.description) : null,
    isAdmin() ? h('p', { class: 'actions' }, pauseButton(job, render)) : null,
    h(
      'dl',
      { class: 'facts' },
      facts([
        ['schedule', { id: 'job-schedule' }, job.scheduleText, job.timeZone ? ` · time zone ${job.timeZone}` : ''],
        job.scheduleWords ? ['in words', { id: 'job-words' }, job.scheduleWords] : null,
        job.nextRuns.length ? ['next fires', { id: 'job-next' }, nextFires(job, 5)] : null,
        ['runs', {}, `${limitsText(job)} · misfire ${job.misfire}`, job.timeoutMs ? ` · timeout ${dur(job.timeoutMs)}` : ''],
        ['token', {}, tokenText(job)],
        ['kept', { id: 'job-retention' }, keepText(job.retention)],
      ]),
    ),
  ];
}

function recentRuns(name, list) {
  return [
    h('h2', {}, 'Recent runs'),
    list.length ? runsTable(list, { job: false }) : h('p', { class: 'muted' }, 'no runs yet'),
    h('p', {}, h('a', { href: `runs.html?job=${encodeURIComponent(name)}` }, 'every run of this job, with filters →')),
  ];
}

export default async function jobPage() {
  const name = new URLSearchParams(location.search).get('name');
  if (!name) return show(failure('no job given (job.html?name=<job>)'));
  const top = new Region('section', { id: 'job-head' });
  const recent = new Region('section', { id: 'job-runs' });
  const errors = h('div', {});
  const chartsEl = h('section', { id: 'job-charts' });
  const formEl = h('section', { id: 'job-run-now' });
  // The Run-now form's module (lib/forms.js) loads with the first answers.
  const forms = isAdmin() ? import('../lib/forms.js') : null;
  let job = await api(`jobs/${encodeURIComponent(name)}`);
  const render = async () => {
    const [fresh, runs] = await Promise.all([
      api(`jobs/${encodeURIComponent(name)}`),
      api(`runs?job=${encodeURIComponent(name)}&limit=20`),
    ]);
    job = fresh;
    const { lastRun: _lastRun, ...stable } = job;
    // The next fire times move with the clock: the head is redrawn at least once a minute.
    top.update({ ...stable, minute: Math.floor(Date.now() / 60_000) }, () => jobHead(job, render));
    recent.update(runs.runs, (list) => recentRuns(name, list));
  };
  await render();
  if (forms) formEl.replaceChildren(h('h2', {}, 'Run now'), (await forms).paramsForm(job, openRun));
  show(
    h('p', {}, h('a', { href: './' }, '← all jobs')),
    errors,
    top.el,
    h('div', { class: 'columns job-columns' }, formEl, recent.el),
    h('h2', {}, 'Success and duration'),
    chartsEl,
  );
  await charts(chartsEl, name).catch((err) => chartsEl.replaceChildren(failure(err)));
  everyAfter(5000, render, errors);
  everyAfter(60_000, () => charts(chartsEl, name));
}
