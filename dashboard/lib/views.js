// Pieces several pages show: times, state badges, links to jobs and runs, the runs table, schedules, Pause/Resume.
import { post } from './api.js';
import { h, table } from './dom.js';
import { LOCAL_TZ, dur, inZone, when } from './format.js';

export function time(iso) {
  return h('time', { datetime: iso || '', title: iso || '' }, when(iso));
}

/** A time in a table cell: the time of day for today ("09:03:19"), the date too otherwise, and how long ago on hover. */
export function shortTime(iso) {
  if (!iso) return h('span', { class: 'muted' }, '–');
  const d = new Date(iso);
  const today = d.toDateString() === new Date().toDateString();
  const text = today
    ? d.toLocaleTimeString(undefined, { hour12: false })
    : d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false });
  return h('time', { datetime: iso, title: when(iso) }, text);
}

export function badge(state) {
  return h('span', { class: `badge state-${state}` }, state);
}

/**
 * How a run ended (completed, failed, timeout, cancelled, skipped, misfire) once it has, else its BullMQ state. Servers
 * that report no outcome yet get the state, as before.
 */
export function runBadge(run) {
  if (!run.outcome) return badge(run.state);
  return h('span', { class: `badge outcome-${run.outcome}`, 'data-outcome': run.outcome, title: `state: ${run.state}` }, run.outcome);
}

/** Paused or active. */
export function jobBadge(job) {
  return job.paused ? h('span', { class: 'badge paused' }, 'paused') : h('span', { class: 'badge active-job' }, 'active');
}

/** The live badge of a token, or `otherwise`. */
export function liveBadge(live, otherwise = null) {
  return live ? h('span', { class: 'badge state-active' }, 'live') : otherwise;
}

export function runLink(runId, text) {
  return h('a', { href: `run.html?id=${encodeURIComponent(runId)}` }, text ?? runId);
}

export function jobLink(name) {
  return h('a', { href: `job.html?name=${encodeURIComponent(name)}` }, name);
}

/** Opens a run's page (after a trigger). */
export function openRun(runId) {
  location.href = `run.html?id=${encodeURIComponent(runId)}`;
}

/** Who triggered a run: a parent run is a link to it. */
export function byText(by) {
  if (!by) return h('span', { class: 'muted' }, '–');
  if (by.startsWith('run:')) return ['run ', runLink(by.slice(4))];
  return by;
}

/** A job's token: "audience a b scope x:y". */
export function tokenText(job) {
  return ['audience ', h('code', {}, job.audience.join(' ')), ' scope ', h('code', {}, job.scope.join(' ') || '(none)')];
}

/** `ctx.progress(n)`: anything but the untouched 0 is shown. */
export function hasProgress(p) {
  return p !== undefined && p !== null && p !== 0 && p !== '';
}

/** A number 0-100 as a bar and a percentage; anything else as JSON. */
export function progressView(p) {
  if (typeof p === 'number' && p >= 0 && p <= 100) {
    return [h('progress', { max: '100', value: String(p) }), ` ${Math.round(p * 10) / 10}%`];
  }
  return h('code', {}, JSON.stringify(p));
}

const RUN_COLUMNS = ['Run', 'Job', 'Outcome', 'Trigger', 'Triggered by', 'Created', 'Finished', 'Took', 'Attempts', 'Error'];

/** Runs as a table (the Runs page, a job's recent runs); `{ job: false }` leaves the Job column out. */
export function runsTable(runs, opts = {}) {
  const withJob = opts.job !== false;
  return table(
    'runs',
    RUN_COLUMNS.filter((c) => withJob || c !== 'Job'),
    runs,
    (r) =>
      h(
        'tr',
        { 'data-run': r.runId, 'data-outcome': r.outcome ?? r.state },
        h('td', {}, runLink(r.runId, r.runId.slice(r.job.length + 1))),
        withJob ? h('td', {}, jobLink(r.job)) : null,
        h('td', {}, runBadge(r)),
        h('td', {}, r.trigger),
        h('td', {}, byText(r.triggeredBy)),
        h('td', {}, shortTime(r.createdAt)),
        h('td', {}, shortTime(r.finishedAt)),
        h('td', { class: 'num' }, dur(r.durationMs)),
        h('td', { class: 'num' }, r.attempts),
        h('td', { class: 'error small' }, r.error ?? ''),
      ),
  );
}

/** Pause or Resume of a job (on every host, schedule included), then `after()`. */
export function pauseButton(job, after) {
  const onclick = async () => {
    const ask = `Pause ${job.name}? Its schedule stops firing and its queue stops handing out runs, on every host.`;
    if (!job.paused && !globalThis.confirm(ask)) return;
    await post(`jobs/${encodeURIComponent(job.name)}/${job.paused ? 'resume' : 'pause'}`);
    await after();
  };
  return h('button', { type: 'button', 'data-action': job.paused ? 'resume' : 'pause', onclick }, job.paused ? 'Resume' : 'Pause');
}

/** Next fire times in the schedule's own time zone (a cron's tz) and in the reader's. */
export function nextFires(job, count) {
  const tz = job.timeZone;
  const fire = (t) =>
    tz && tz !== LOCAL_TZ
      ? [h('span', { class: 'tz' }, inZone(t, tz)), ' · ', h('span', { class: 'muted' }, `${when(t)} ${LOCAL_TZ}`)]
      : [time(t), ' ', h('span', { class: 'muted' }, tz ?? LOCAL_TZ)];
  return h(
    'ul',
    { class: 'next' },
    job.nextRuns.slice(0, count).map((t) => h('li', {}, fire(t))),
  );
}

export function scheduleCell(job) {
  return [
    h('span', { class: 'schedule-text' }, job.scheduleText),
    job.scheduleWords && job.scheduleWords !== job.scheduleText ? h('div', { class: 'words' }, job.scheduleWords) : null,
    job.nextRuns.length ? nextFires(job, 3) : null,
  ];
}
