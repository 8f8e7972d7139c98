/* global Node, URLSearchParams, alert, ResizeObserver */
// jobscope's pages: one small ES module, no framework, no build step. Each page is a function picked by <body data-page>.
// Everything is built with DOM nodes and textContent (never innerHTML), so job output cannot inject markup.

const FINISHED = new Set(['completed', 'failed']);
const main = document.getElementById('main');
let me = { user: '', role: 'viewer' };

/** h('a', { href: 'x', class: 'y', onclick: fn }, 'text', child...) */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

/** Set by Log out: the pages' polling stops asking (a refused request would bring the login prompt back). */
let loggedOut = false;

async function api(path, options = {}) {
  if (loggedOut) throw new ApiError(401, { message: 'logged out' });
  const res = await fetch(`/api/${path}`, {
    ...options,
    headers: { Accept: 'application/json', ...(options.body ? { 'Content-Type': 'application/json' } : {}) },
    credentials: 'same-origin',
  });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

// Admins and operators may trigger, cancel, retry and pause; viewers only look.
const isAdmin = () => me.role === 'admin' || me.role === 'operator';

function when(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  const secs = Math.round((d.getTime() - Date.now()) / 1000);
  const abs = Math.abs(secs);
  if (abs < 2) return `${d.toLocaleString()} (just now)`;
  const rel =
    abs < 60
      ? `${abs}s`
      : abs < 3600
        ? `${Math.round(abs / 60)}m`
        : abs < 86400
          ? `${Math.round(abs / 3600)}h`
          : `${Math.round(abs / 86400)}d`;
  return `${d.toLocaleString()} (${secs >= 0 ? 'in ' : ''}${rel}${secs < 0 ? ' ago' : ''})`;
}

function time(iso) {
  return h('time', { datetime: iso || '', title: iso || '' }, when(iso));
}

function badge(state) {
  return h('span', { class: `badge state-${state}` }, state);
}

/**
 * How a run ended (completed, failed, timeout, cancelled, skipped, misfire) once it has, else its BullMQ state. Servers
 * that report no outcome yet get the state, as before.
 */
function runBadge(run) {
  if (!run.outcome) return badge(run.state);
  return h('span', { class: `badge outcome-${run.outcome}`, 'data-outcome': run.outcome, title: `state: ${run.state}` }, run.outcome);
}

function runLink(runId, text) {
  return h('a', { href: `run.html?id=${encodeURIComponent(runId)}` }, text ?? runId);
}

function show(...nodes) {
  main.replaceChildren(...nodes.flat(2).filter((n) => n !== null && n !== undefined && n !== false));
}

/** Calls `render` now and every `ms` while `again()` holds; a failed refresh shows the error and keeps trying. */
async function poll(render, ms, again = () => true) {
  try {
    await render();
  } catch (err) {
    show(failure(err));
  }
  if (again()) setTimeout(() => poll(render, ms, again), ms);
}

function failure(err) {
  return h('p', { class: 'error', role: 'alert' }, err instanceof ApiError ? `${err.status}: ${err.message}` : String(err));
}

// ---------- the run-now form, generated from the job's params JSON Schema ----------

/** One input per top-level property for the simple types; anything else is edited as JSON. */
function paramsForm(job, onDone) {
  const schema = job.params;
  const props = schema && schema.type === 'object' && schema.properties ? schema.properties : null;
  const fields = [];
  const errors = h('ul', { class: 'errors', role: 'alert' });
  let raw;

  if (props) {
    for (const [name, prop] of Object.entries(props)) {
      const id = `f-${job.name}-${name}`;
      const required = (schema.required || []).includes(name);
      let input;
      if (prop.type === 'boolean') {
        input = h('input', { type: 'checkbox', id, name, checked: prop.default === true });
      } else if (Array.isArray(prop.enum)) {
        input = h(
          'select',
          { id, name },
          required ? null : h('option', { value: '' }, '(unset)'),
          prop.enum.map((v) => h('option', { value: JSON.stringify(v), selected: v === prop.default }, String(v))),
        );
      } else if (prop.type === 'integer' || prop.type === 'number') {
        input = h('input', {
          type: 'number',
          id,
          name,
          step: prop.type === 'integer' ? '1' : 'any',
          min: prop.minimum,
          max: prop.maximum,
          value: prop.default,
        });
      } else if (prop.type === 'string') {
        input = h('input', { type: 'text', id, name, value: prop.default, placeholder: prop.format || '' });
      } else {
        input = h(
          'textarea',
          { id, name, rows: 2, class: 'json', placeholder: 'JSON' },
          prop.default === undefined ? '' : JSON.stringify(prop.default),
        );
      }
      fields.push({ name, prop, input });
    }
  } else {
    raw = h('textarea', { name: 'data', rows: 4, class: 'json' }, '{}');
  }

  const collect = () => {
    if (raw) return JSON.parse(raw.value || '{}');
    const data = {};
    for (const { name, prop, input } of fields) {
      if (prop.type === 'boolean') data[name] = input.checked;
      else if (input.value === '') continue;
      else if (input.tagName === 'SELECT') data[name] = JSON.parse(input.value);
      else if (prop.type === 'integer' || prop.type === 'number') data[name] = Number(input.value);
      else if (prop.type === 'string') data[name] = input.value;
      else data[name] = JSON.parse(input.value);
    }
    return data;
  };

  // Trigger options: sent only when filled; the server checks them (delay and at together, a time in the past, ...).
  const opt = {
    at: h('input', { type: 'datetime-local', id: `o-${job.name}-at`, name: 'at', step: 1 }),
    delay: h('input', { type: 'text', id: `o-${job.name}-delay`, name: 'delay', placeholder: '30s, 5m, 2h' }),
    priority: h('input', { type: 'number', id: `o-${job.name}-priority`, name: 'priority', min: 1, step: 1, placeholder: '1 runs first' }),
    key: h('input', { type: 'text', id: `o-${job.name}-key`, name: 'key', maxlength: 200, placeholder: 'e.g. import-2026-11-05' }),
  };
  const options = () => {
    const out = {};
    if (opt.at.value) {
      // datetime-local is the browser's local time, without a zone: send it as an ISO instant.
      const at = new Date(opt.at.value);
      if (Number.isNaN(at.getTime())) throw new Error(`run at: "${opt.at.value}" is not a time`);
      out.at = at.toISOString();
    }
    const delay = opt.delay.value.trim();
    if (delay) out.delay = /^\d+$/.test(delay) ? Number(delay) : delay;
    if (opt.priority.value !== '') out.priority = Number(opt.priority.value);
    if (opt.key.value !== '') out.key = opt.key.value;
    return out;
  };
  const optionLabel = (input, text, hint) =>
    h('label', { for: input.id }, h('span', {}, text), input, hint ? h('small', { class: 'muted' }, hint) : null);
  const answer = h('p', { class: 'answer', role: 'status', hidden: true });
  const say = (cls, ...nodes) => {
    answer.className = `answer ${cls}`;
    answer.replaceChildren(...nodes);
    answer.hidden = false;
  };

  const form = h(
    'form',
    {
      class: 'run-form',
      novalidate: true, // the server's validation is the one that counts: show its reasons, not the browser's
      'data-job': job.name,
      onsubmit: async (event) => {
        event.preventDefault();
        errors.replaceChildren();
        answer.hidden = true;
        let data;
        let extra;
        try {
          data = collect();
        } catch (err) {
          errors.append(h('li', {}, `not valid JSON: ${err.message}`));
          return;
        }
        try {
          extra = options();
        } catch (err) {
          errors.append(h('li', {}, err.message));
          return;
        }
        try {
          const { runId, existing } = await api(`jobs/${encodeURIComponent(job.name)}/runs`, {
            method: 'POST',
            body: JSON.stringify({ data, trigger: 'manual', ...extra }),
          });
          // The same idempotency key while its run is kept: that run, not a new one.
          if (existing) say('existing', 'a run with this key already exists: ', runLink(runId));
          else onDone(runId);
        } catch (err) {
          const body = err instanceof ApiError ? err.body : {};
          if (err instanceof ApiError && err.status === 409 && body.blocking) {
            say('refused', `${err.message} `, runLink(body.blocking, `open ${body.blocking}`));
          } else if (body.issues) for (const issue of body.issues) errors.append(h('li', {}, `${issue.path || '/'} ${issue.message}`));
          else errors.append(h('li', {}, err.message));
        }
      },
    },
    fields.map(({ name, prop, input }) =>
      h('label', { for: input.id }, h('span', {}, name), input, prop.description ? h('small', { class: 'muted' }, prop.description) : null),
    ),
    raw ? h('label', {}, h('span', {}, 'data (JSON)'), raw) : null,
    h(
      'details',
      { class: 'run-options' },
      h('summary', {}, 'Options'),
      optionLabel(opt.at, 'run at', 'your local time; or a delay, not both'),
      optionLabel(opt.delay, 'delay', 'run later: 30s, 5m, 2h'),
      optionLabel(opt.priority, 'priority', '1 or more; lower runs first'),
      optionLabel(opt.key, 'idempotency key', 'the same key while its run is kept returns that run'),
    ),
    h('button', { type: 'submit', class: 'primary' }, `Run ${job.name} now`),
    errors,
    answer,
  );
  return form;
}

// ---------- shared pieces of the pages ----------

/** 1.23 s, 4m 05s, 2h 10m: a duration for people. */
function dur(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m ${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')}s`;
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)}h ${String(Math.round((ms % 3_600_000) / 60_000)).padStart(2, '0')}m`;
  const hours = Math.round((ms % 86_400_000) / 3_600_000);
  return `${Math.floor(ms / 86_400_000)}d${hours ? ` ${hours}h` : ''}`;
}

/** The browser's time zone (what `when` shows). */
const LOCAL_TZ = Intl.DateTimeFormat().resolvedOptions().timeZone;

/** A time in a given zone: "2026-12-03 02:30:00 Asia/Shanghai". */
function inZone(iso, tz) {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone: tz,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).formatToParts(new Date(iso));
  const v = (t) => parts.find((p) => p.type === t)?.value ?? '';
  return `${v('year')}-${v('month')}-${v('day')} ${v('hour')}:${v('minute')}:${v('second')} ${tz}`;
}

/** A time in a table cell: the time of day for today ("09:03:19"), the date too otherwise, and how long ago on hover. */
function shortTime(iso) {
  if (!iso) return h('span', { class: 'muted' }, '–');
  const d = new Date(iso);
  const today = d.toDateString() === new Date().toDateString();
  const text = today
    ? d.toLocaleTimeString(undefined, { hour12: false })
    : d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false });
  return h('time', { datetime: iso, title: when(iso) }, text);
}

function jobLink(name) {
  return h('a', { href: `job.html?name=${encodeURIComponent(name)}` }, name);
}

/** Who triggered a run: a parent run is a link to it. */
function byText(by) {
  if (!by) return h('span', { class: 'muted' }, '–');
  if (by.startsWith('run:')) return ['run ', runLink(by.slice(4))];
  return by;
}

/** A table that scrolls sideways on a narrow screen instead of overflowing the page. */
function tableWrap(table) {
  return h('div', { class: 'table-wrap' }, table);
}

function head(...titles) {
  return h(
    'thead',
    {},
    h(
      'tr',
      {},
      titles.filter((t) => t !== null).map((t) => h('th', {}, t)),
    ),
  );
}

/**
 * A part of a live page that is rebuilt only when its data changed, and not while the reader has text selected in it
 * (the next refresh does it): refreshing never loses the scroll position or a selection.
 */
class Region {
  constructor(tag = 'section', attrs = {}) {
    this.el = h(tag, attrs);
    this.key = undefined;
  }
  update(data, build) {
    const key = JSON.stringify(data);
    if (key === this.key) return false;
    const selection = document.getSelection();
    if (selection && !selection.isCollapsed && this.el.contains(selection.anchorNode)) return false;
    this.key = key;
    this.el.replaceChildren(...[build(data)].flat(3).filter((n) => n !== null && n !== undefined && n !== false));
    return true;
  }
}

/** Calls `tick` now and then every `ms` (a failed refresh shows its error in `errorEl` and keeps going). */
function every(ms, tick, errorEl) {
  let stopped = false;
  const loop = async () => {
    try {
      await tick();
      if (errorEl) errorEl.replaceChildren();
    } catch (err) {
      if (errorEl) errorEl.replaceChildren(failure(err));
    }
    if (!stopped) setTimeout(loop, typeof ms === 'function' ? ms() : ms);
  };
  loop();
  return () => (stopped = true);
}

/** `ctx.progress(n)`: anything but the untouched 0 is shown. */
function hasProgress(p) {
  return p !== undefined && p !== null && p !== 0 && p !== '';
}

/** A number 0-100 as a bar and a percentage; anything else as JSON. */
function progressView(p) {
  if (typeof p === 'number' && p >= 0 && p <= 100) {
    return [h('progress', { max: '100', value: String(p) }), ` ${Math.round(p * 10) / 10}%`];
  }
  return h('code', {}, JSON.stringify(p));
}

function pauseButton(job, after) {
  return h(
    'button',
    {
      type: 'button',
      'data-action': job.paused ? 'resume' : 'pause',
      onclick: async () => {
        if (
          !job.paused &&
          !globalThis.confirm(`Pause ${job.name}? Its schedule stops firing and its queue stops handing out runs, on every host.`)
        )
          return;
        await api(`jobs/${encodeURIComponent(job.name)}/${job.paused ? 'resume' : 'pause'}`, { method: 'POST' }).catch((err) =>
          alert(err.message),
        );
        await after();
      },
    },
    job.paused ? 'Resume' : 'Pause',
  );
}

/** Next fire times in the schedule's own time zone (a cron's tz) and in the reader's. */
function nextFires(job, count) {
  const tz = job.timeZone;
  return h(
    'ul',
    { class: 'next' },
    job.nextRuns
      .slice(0, count)
      .map((t) =>
        h(
          'li',
          {},
          tz && tz !== LOCAL_TZ
            ? [h('span', { class: 'tz' }, inZone(t, tz)), ' · ', h('span', { class: 'muted' }, `${when(t)} ${LOCAL_TZ}`)]
            : [time(t), ' ', h('span', { class: 'muted' }, tz ?? LOCAL_TZ)],
        ),
      ),
  );
}

function scheduleCell(job) {
  return [
    h('span', { class: 'schedule-text' }, job.scheduleText),
    job.scheduleWords && job.scheduleWords !== job.scheduleText ? h('div', { class: 'words' }, job.scheduleWords) : null,
    job.nextRuns.length ? nextFires(job, 3) : null,
  ];
}

// ---------- pages ----------

/** Finished runs of one window by outcome, as a tile: how many, the success rate, and each outcome that happened. */
function windowTile(id, title, c) {
  const rate = c.successRate === null ? '–' : `${(Math.floor(c.successRate * 1000) / 10).toFixed(1)}%`;
  const parts = ['completed', 'failed', 'timeout', 'cancelled', 'skipped', 'misfire']
    .filter((o) => c[o] > 0 || o === 'completed' || o === 'failed')
    .map((o) => h('li', { 'data-outcome': o }, h('span', { class: `badge outcome-${o}` }, o), ' ', h('span', { class: 'num' }, c[o])));
  return h(
    'section',
    { class: 'tile', id },
    h('h3', {}, title),
    h('p', { class: 'big' }, h('span', { 'data-stat': 'finished' }, c.finished), ' runs'),
    h('p', {}, 'success rate ', h('strong', { 'data-stat': 'success-rate' }, rate)),
    h('ul', { class: 'outcomes' }, parts),
  );
}

/**
 * The fleet at a glance, above the jobs table: runs by outcome in the last 24 h and 7 days, workers alive and dead, live
 * tokens, the jobs failing now (their last run did not complete) and runs per hour. GET /api/overview, every 5 s; the
 * chart is drawn once and given new data when the counts change.
 */
function overviewSection() {
  const el = h('section', { id: 'overview', 'aria-label': 'Overview' });
  const tiles = h('div', { class: 'tiles' });
  const failing = h('div', { id: 'ov-failing' });
  const chartBox = h('div', { class: 'chart', id: 'chart-runs-hourly' });
  el.append(h('h1', {}, 'Overview'), tiles, h('div', { class: 'columns' }, failing, chartBox));
  let plot = null;
  let drawn = '';
  const render = async () => {
    const o = await api('overview');
    tiles.replaceChildren(
      windowTile('ov-24h', 'Last 24 hours', o.last24h),
      windowTile('ov-7d', 'Last 7 days', o.last7d),
      h(
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
      ),
    );
    failing.replaceChildren(
      h('h3', {}, 'Failing now'),
      o.failing.length
        ? h(
            'ul',
            { class: 'failing' },
            o.failing.map((r) =>
              h(
                'li',
                { 'data-job': r.job },
                h('strong', {}, jobLink(r.job)),
                ' ',
                runBadge(r),
                ' ',
                runLink(r.runId, when(r.finishedAt)),
                r.error ? h('div', { class: 'error small' }, r.error) : null,
              ),
            ),
          )
        : h('p', { class: 'muted', id: 'ov-none-failing' }, 'No job is failing: every job’s last finished run completed.'),
    );
    const key = JSON.stringify(o.hourly);
    if (key === drawn) return;
    drawn = key;
    const xs = o.hourly.map((b) => Date.parse(b.start) / 1000);
    const data = [xs, o.hourly.map((b) => b.completed), o.hourly.map((b) => b.failed)];
    if (plot) plot.setData(data);
    else
      plot = await chart(
        chartBox,
        'Runs per hour (48 h)',
        xs,
        [
          { label: 'completed', color: '#1f8a4c', values: data[1] },
          { label: 'failed', color: '#c0392b', values: data[2] },
        ],
        'runs',
      );
  };
  return { el, render };
}

async function jobsPage() {
  const rows = new Map();
  const tbody = h('tbody', {});
  const errors = h('div', {});
  let names = '';

  const cells = (job, row) => [
    h('td', {}, h('strong', {}, jobLink(job.name)), h('div', { class: 'muted' }, job.description)),
    h('td', {}, scheduleCell(job)),
    h('td', {}, job.paused ? h('span', { class: 'badge paused' }, 'paused') : h('span', { class: 'badge active-job' }, 'active')),
    h(
      'td',
      {},
      job.lastRun
        ? [runBadge(job.lastRun), ' ', runLink(job.lastRun.runId, when(job.lastRun.finishedAt || job.lastRun.createdAt))]
        : h('span', { class: 'muted' }, 'never'),
    ),
    h('td', { class: 'num ok' }, job.counts.completed ?? 0),
    h('td', { class: 'num bad' }, job.counts.failed ?? 0),
    h(
      'td',
      { class: 'actions' },
      h('button', { type: 'button', onclick: () => toggle(row), 'data-action': 'open' }, isAdmin() ? 'Run now…' : 'Details'),
      isAdmin() ? pauseButton(job, render) : null,
    ),
  ];

  const toggle = async (row) => {
    row.detail.hidden = !row.detail.hidden;
    if (row.detail.hidden) return;
    const job = row.job;
    const cell = row.detail.firstChild;
    const runs = await api(`jobs/${encodeURIComponent(job.name)}/runs?limit=10`).catch(() => []);
    cell.replaceChildren(
      h(
        'div',
        { class: 'columns' },
        isAdmin()
          ? h(
              'section',
              {},
              h('h3', {}, 'Run now'),
              paramsForm(job, (runId) => (location.href = `run.html?id=${encodeURIComponent(runId)}`)),
            )
          : null,
        h(
          'section',
          {},
          h('h3', {}, 'Recent runs'),
          runs.length
            ? h(
                'ul',
                { class: 'runs' },
                runs.map((r) =>
                  h('li', {}, runBadge(r), ' ', runLink(r.runId), ' ', h('span', { class: 'muted' }, r.trigger, ' · ', when(r.createdAt))),
                ),
              )
            : h('p', { class: 'muted' }, 'no runs yet'),
          h('p', {}, h('a', { href: `job.html?name=${encodeURIComponent(job.name)}` }, `${job.name}: charts, every run, schedule →`)),
          h('h3', {}, 'Token'),
          h('p', {}, 'audience ', h('code', {}, job.audience.join(' ')), ' scope ', h('code', {}, job.scope.join(' ') || '(none)')),
          h(
            'p',
            { class: 'muted' },
            `attempts ${job.attempts} · concurrency ${job.concurrency} · overlap ${job.overlap}${job.timeoutMs ? ` · timeout ${job.timeoutMs / 1000}s` : ''}`,
          ),
        ),
      ),
    );
  };

  // Live: the rows' cells follow the API every 5 s; an open detail row (a form being filled in) is left alone.
  const render = async () => {
    const jobs = await api('jobs');
    const now = jobs.map((j) => j.name).join('\n');
    if (now !== names) {
      names = now;
      rows.clear();
      tbody.replaceChildren();
      for (const job of jobs) {
        const row = {
          job,
          tr: h('tr', { 'data-job': job.name }),
          detail: h('tr', { class: 'detail', hidden: true }, h('td', { colspan: 7 })),
        };
        rows.set(job.name, row);
        tbody.append(row.tr, row.detail);
      }
    }
    for (const job of jobs) {
      const row = rows.get(job.name);
      row.job = job;
      const key = JSON.stringify(job);
      if (row.key === key) continue;
      row.key = key;
      row.tr.replaceChildren(...cells(job, row));
    }
  };
  const overview = overviewSection();
  const overviewErrors = h('div', {});
  show(
    overview.el,
    overviewErrors,
    h('h1', {}, 'Jobs'),
    errors,
    tableWrap(
      h('table', { class: 'jobs' }, head('Job', 'Schedule (next fire times)', 'State', 'Last run', 'Succeeded', 'Failed', ''), tbody),
    ),
    h(
      'p',
      { class: 'muted' },
      'Refreshes every 5 s. Succeeded/failed count the runs Redis still keeps (see each job’s retention). Every run: ',
      h('a', { href: 'runs.html' }, 'Runs'),
      '.',
    ),
  );
  await Promise.all([render(), overview.render().catch((err) => overviewErrors.replaceChildren(failure(err)))]);
  setTimeout(() => every(5000, render, errors), 5000);
  setTimeout(() => every(5000, overview.render, overviewErrors), 5000);
}

const OUTCOME_CHOICES = ['completed', 'failed', 'timeout', 'cancelled', 'skipped', 'misfire'];
const STATE_CHOICES = ['active', 'waiting', 'delayed', 'prioritized', 'waiting-children'];
const TRIGGER_CHOICES = ['manual', 'api', 'schedule', 'parent', 'retry', 'misfire', 'shard'];

/** datetime-local value <-> ISO (the browser's time zone). */
function localValue(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
}

function runsTable(runs, opts = {}) {
  return tableWrap(
    h(
      'table',
      { class: 'runs' },
      head(
        'Run',
        opts.job === false ? null : 'Job',
        'Outcome',
        'Trigger',
        'Triggered by',
        'Created',
        'Finished',
        'Took',
        'Attempts',
        'Error',
      ),
      h(
        'tbody',
        {},
        runs.map((r) =>
          h(
            'tr',
            { 'data-run': r.runId, 'data-outcome': r.outcome ?? r.state },
            h('td', {}, runLink(r.runId, r.runId.slice(r.job.length + 1))),
            opts.job === false ? null : h('td', {}, jobLink(r.job)),
            h('td', {}, runBadge(r)),
            h('td', {}, r.trigger),
            h('td', {}, byText(r.triggeredBy)),
            h('td', {}, shortTime(r.createdAt)),
            h('td', {}, shortTime(r.finishedAt)),
            h('td', { class: 'num' }, dur(r.durationMs)),
            h('td', { class: 'num' }, r.attempts),
            h('td', { class: 'error small' }, r.error ?? ''),
          ),
        ),
      ),
    ),
  );
}

async function runsPage() {
  const params = new URLSearchParams(location.search);
  const jobs = await api('jobs');
  const select = (name, choices, labels = {}) =>
    h(
      'select',
      { name, id: `filter-${name}` },
      h('option', { value: '' }, 'any'),
      choices.map((c) => h('option', { value: c, selected: params.get(name) === c }, labels[c] ?? c)),
    );
  const field = (label, input) => h('label', { for: input.id }, h('span', {}, label), input);
  const inputs = {
    job: select(
      'job',
      jobs.map((j) => j.name),
    ),
    state: select('state', [...OUTCOME_CHOICES, ...STATE_CHOICES, 'finished', 'unfinished']),
    trigger: select('trigger', TRIGGER_CHOICES),
    by: h('input', {
      type: 'text',
      name: 'by',
      id: 'filter-by',
      value: params.get('by') ?? '',
      placeholder: 'user:ada, cli:ops, schedule, run:<id>',
    }),
    from: h('input', { type: 'datetime-local', name: 'from', id: 'filter-from', step: 1, value: localValue(params.get('from')) }),
    to: h('input', { type: 'datetime-local', name: 'to', id: 'filter-to', step: 1, value: localValue(params.get('to')) }),
  };
  const list = new Region('div', { id: 'runs-list' });
  const more = h('div', { id: 'runs-more' });
  const errors = h('div', {});
  let next = null;
  let pages = 1;

  const query = () => {
    const q = new URLSearchParams();
    for (const [name, input] of Object.entries(inputs)) {
      const value = input.value.trim();
      if (!value) continue;
      q.set(name, name === 'from' || name === 'to' ? new Date(value).toISOString() : value);
    }
    return q;
  };
  const first = async () => {
    const q = query();
    const page = await api(`runs?${q}&limit=50`);
    // After "More" the list grows; the refresh then leaves it alone instead of cutting it back to one page.
    if (pages > 1) return;
    list.update(page.runs, (runs) => (runs.length ? runsTable(runs) : h('p', { class: 'muted', id: 'no-runs' }, 'No run matches.')));
    next = page.next;
    more.replaceChildren(...(next ? [h('button', { type: 'button', 'data-action': 'more', onclick: loadMore }, 'More')] : []));
  };
  const loadMore = async () => {
    const page = await api(`runs?${query()}&limit=50&cursor=${encodeURIComponent(next)}`);
    pages++;
    list.el.querySelector('table.runs tbody')?.append(...runsTable(page.runs).querySelectorAll('tbody tr'));
    next = page.next;
    more.replaceChildren(...(next ? [h('button', { type: 'button', 'data-action': 'more', onclick: loadMore }, 'More')] : []));
  };
  const form = h(
    'form',
    {
      class: 'filters',
      onsubmit: async (event) => {
        event.preventDefault();
        history.replaceState(null, '', `runs.html${query().size ? `?${query()}` : ''}`);
        pages = 1;
        list.key = undefined;
        await first().catch((err) => errors.replaceChildren(failure(err)));
      },
    },
    field('job', inputs.job),
    field('outcome / state', inputs.state),
    field('trigger', inputs.trigger),
    field('triggered by', inputs.by),
    field('from', inputs.from),
    field('to', inputs.to),
    h('button', { type: 'submit', class: 'primary' }, 'Filter'),
  );
  show(
    h('h1', {}, 'Runs'),
    h('p', { class: 'muted' }, 'Every kept run of every job, newest first (unfinished runs on top). Refreshes every 5 s.'),
    form,
    errors,
    list.el,
    more,
  );
  every(5000, first, errors);
}

/** A small time chart (uPlot): one or more series over bucket start times. */
async function chart(el, title, xs, series, unit) {
  const { default: uPlot } = await import('./vendor/uplot/uPlot.esm.js');
  const width = Math.max(280, el.clientWidth || 600);
  const opts = {
    title,
    width,
    height: 190,
    scales: { x: { time: true }, y: unit === '%' ? { range: [0, 100] } : { auto: true } },
    axes: [
      {},
      {
        values: (_u, ticks) => ticks.map((v) => (v === null ? '' : unit === '%' ? `${v}%` : unit === 'runs' ? String(v) : dur(v * 1000))),
        size: 60,
      },
    ],
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: true, size: 4 }, spanGaps: false }))],
  };
  el.replaceChildren();
  const plot = new uPlot(opts, [xs, ...series.map((s) => s.values)], el);
  new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 190 })).observe(el);
  return plot;
}

async function charts(container, name) {
  const stats = await api(`jobs/${encodeURIComponent(name)}/stats?tz=${encodeURIComponent(LOCAL_TZ)}`);
  const draw = async (buckets, label) => {
    const xs = buckets.map((b) => Date.parse(b.start) / 1000);
    const rate = h('div', { class: 'chart', id: `chart-${label}-rate` });
    const durations = h('div', { class: 'chart', id: `chart-${label}-duration` });
    container.append(h('div', { class: 'chart-pair', 'data-chart': label }, rate, durations));
    await chart(
      rate,
      `Success rate per ${label === 'hourly' ? 'hour (48 h)' : 'day (30 days)'}`,
      xs,
      [
        {
          label: 'success %',
          color: '#1f8a4c',
          values: buckets.map((b) => (b.successRate === null ? null : Math.round(b.successRate * 1000) / 10)),
        },
      ],
      '%',
    );
    await chart(
      durations,
      `Duration per ${label === 'hourly' ? 'hour' : 'day'}`,
      xs,
      [
        { label: 'p50', color: '#2f5bd3', values: buckets.map((b) => (b.p50Ms === null ? null : b.p50Ms / 1000)) },
        { label: 'p95', color: '#c0392b', values: buckets.map((b) => (b.p95Ms === null ? null : b.p95Ms / 1000)) },
      ],
      's',
    );
  };
  container.replaceChildren(
    h(
      'p',
      { class: 'muted', id: 'stats-summary' },
      `From the ${stats.runs} finished run(s) Redis keeps (the last 30 days at most); days in ${stats.tz}.`,
    ),
  );
  await draw(stats.hourly, 'hourly');
  await draw(stats.daily, 'daily');
}

async function jobPage() {
  const name = new URLSearchParams(location.search).get('name');
  if (!name) return show(failure('no job given (job.html?name=<job>)'));
  const top = new Region('section', { id: 'job-head' });
  const recent = new Region('section', { id: 'job-runs' });
  const errors = h('div', {});
  const chartsEl = h('section', { id: 'job-charts' });
  const formEl = h('section', { id: 'job-run-now' });
  let job = await api(`jobs/${encodeURIComponent(name)}`);
  const render = async () => {
    const [fresh, runs] = await Promise.all([
      api(`jobs/${encodeURIComponent(name)}`),
      api(`runs?job=${encodeURIComponent(name)}&limit=20`),
    ]);
    job = fresh;
    const { lastRun: _lastRun, ...stable } = job;
    top.update({ ...stable, minute: Math.floor(Date.now() / 60_000) }, () => [
      h(
        'h1',
        {},
        job.name,
        ' ',
        job.paused ? h('span', { class: 'badge paused' }, 'paused') : h('span', { class: 'badge active-job' }, 'active'),
      ),
      job.description ? h('p', {}, job.description) : null,
      isAdmin() ? h('p', { class: 'actions' }, pauseButton(job, render)) : null,
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'schedule'),
        h('dd', { id: 'job-schedule' }, job.scheduleText, job.timeZone ? ` · time zone ${job.timeZone}` : ''),
        job.scheduleWords ? [h('dt', {}, 'in words'), h('dd', { id: 'job-words' }, job.scheduleWords)] : null,
        job.nextRuns.length ? [h('dt', {}, 'next fires'), h('dd', { id: 'job-next' }, nextFires(job, 5))] : null,
        h('dt', {}, 'runs'),
        h(
          'dd',
          {},
          `attempts ${job.attempts} · concurrency ${job.concurrency} · overlap ${job.overlap} · misfire ${job.misfire}`,
          job.timeoutMs ? ` · timeout ${dur(job.timeoutMs)}` : '',
        ),
        h('dt', {}, 'token'),
        h('dd', {}, 'audience ', h('code', {}, job.audience.join(' ')), ' scope ', h('code', {}, job.scope.join(' ') || '(none)')),
        h('dt', {}, 'kept'),
        h('dd', { id: 'job-retention' }, keepText(job.retention)),
      ),
    ]);
    recent.update(runs.runs, (list) => [
      h('h2', {}, 'Recent runs'),
      list.length ? runsTable(list, { job: false }) : h('p', { class: 'muted' }, 'no runs yet'),
      h('p', {}, h('a', { href: `runs.html?job=${encodeURIComponent(name)}` }, 'every run of this job, with filters →')),
    ]);
  };
  await render();
  if (isAdmin()) {
    formEl.replaceChildren(
      h('h2', {}, 'Run now'),
      paramsForm(job, (runId) => (location.href = `run.html?id=${encodeURIComponent(runId)}`)),
    );
  }
  show(
    h('p', {}, h('a', { href: './' }, '← all jobs')),
    errors,
    top.el,
    h('div', { class: 'columns job-columns' }, formEl, recent.el),
    h('h2', {}, 'Success and duration'),
    chartsEl,
  );
  await charts(chartsEl, name).catch((err) => chartsEl.replaceChildren(failure(err)));
  setTimeout(() => every(5000, render, errors), 5000);
  setTimeout(() => every(60_000, () => charts(chartsEl, name)), 60_000);
}

function keepText(retention) {
  const rule = (r) =>
    [r.count !== undefined ? `${r.count} runs` : null, r.age !== undefined ? `${dur(r.age * 1000)}` : null].filter(Boolean).join(', ') ||
    'all';
  return `completed: ${rule(retention.completed)} · failed: ${rule(retention.failed)} · ${retention.logs} log lines per run`;
}

async function runPage() {
  const runId = new URLSearchParams(location.search).get('id');
  if (!runId) return show(failure('no run id given (run.html?id=<job>:<id>)'));
  const top = new Region('section', { id: 'run-head' });
  const facts = new Region('section', { id: 'run-facts' });
  const attempts = new Region('section', { id: 'run-attempts-section' });
  const payload = new Region('section', { id: 'run-payload' });
  const claims = new Region('section', { id: 'run-claims' });
  const logs = h('div', { id: 'run-logs', class: 'logs', tabindex: 0 });
  const logsTitle = h('h2', {}, 'Logs');
  const errors = h('div', {});
  let shownLines = [];
  let finished = false;
  let gone = false;

  const act = async (action) => {
    const ask = {
      retry: `Retry run ${runId}? It runs again as your trigger.`,
      cancel: `Cancel run ${runId}? A running attempt is aborted and its token revoked.`,
    };
    if (!globalThis.confirm(ask[action])) return;
    await api(`runs/${encodeURIComponent(runId)}/${action}`, { method: 'POST' }).catch((err) => alert(err.message));
    await render();
  };

  const renderLogs = (lines) => {
    // Appended lines are added, the rest stays (a selection in the logs survives); anything else rebuilds them.
    // Nothing shown yet (the placeholder): rebuild, so the placeholder goes when the first lines come.
    const same =
      shownLines.length > 0 &&
      shownLines.length <= lines.length &&
      shownLines.every((l, i) => l.line === lines[i].line && l.time === lines[i].time);
    const atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 8;
    const row = (l) =>
      h(
        'div',
        { class: 'log-line', 'data-attempt': l.attempt ?? '' },
        h(
          'time',
          { datetime: l.time ?? '', title: l.time ?? 'not recorded' },
          l.time
            ? new Date(l.time).toLocaleTimeString(undefined, { hour12: false }) +
                `.${String(new Date(l.time).getMilliseconds()).padStart(3, '0')}`
            : '–',
        ),
        h('span', { class: 'att' }, l.attempt ? `#${l.attempt}` : ''),
        h('span', { class: 'text' }, l.line),
      );
    if (same) logs.append(...lines.slice(shownLines.length).map(row));
    else logs.replaceChildren(...lines.map(row));
    if (!lines.length) logs.replaceChildren(h('div', { class: 'muted empty' }, '(no log lines yet)'));
    shownLines = lines;
    if (atBottom) logs.scrollTop = logs.scrollHeight;
  };

  const render = async () => {
    let run;
    let live = [];
    try {
      [run, live] = await Promise.all([api(`runs/${encodeURIComponent(runId)}`), api('tokens').catch(() => [])]);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        gone = true;
        show(h('h1', {}, 'Run ', h('code', {}, runId)), failure(err));
        return;
      }
      throw err;
    }
    const liveJtis = new Set(live.map((t) => t.jti));
    finished = Boolean(run.outcome) || FINISHED.has(run.state);
    top.update({ state: run.state, outcome: run.outcome, attempts: run.attempts, admin: isAdmin() }, () => [
      h('h1', {}, 'Run ', h('code', {}, run.runId), ' ', h('span', { id: 'run-state' }, runBadge(run))),
      h(
        'p',
        { class: 'actions' },
        isAdmin() && run.state === 'failed'
          ? h('button', { type: 'button', class: 'primary', 'data-action': 'retry', onclick: () => act('retry') }, 'Retry run')
          : null,
        isAdmin() && !finished
          ? h('button', { type: 'button', 'data-action': 'cancel', onclick: () => act('cancel') }, 'Cancel run')
          : null,
      ),
    ]);
    facts.update({ ...run, logs: undefined, logLines: undefined, attemptList: undefined, claims: undefined }, () =>
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'job'),
        h('dd', {}, jobLink(run.job)),
        h('dt', {}, 'trigger'),
        h('dd', { id: 'run-trigger' }, run.trigger, run.priority ? ` · priority ${run.priority}` : ''),
        h('dt', {}, 'triggered by'),
        h('dd', { id: 'run-by' }, byText(run.triggeredBy)),
        run.retriedBy ? [h('dt', {}, 'retried by'), h('dd', { id: 'run-retried-by' }, byText(run.retriedBy))] : null,
        run.parent ? [h('dt', {}, 'parent run'), h('dd', { id: 'run-parent' }, runLink(run.parent))] : null,
        run.traceUrl
          ? [
              h('dt', {}, 'trace'),
              h('dd', { id: 'run-trace' }, h('a', { href: run.traceUrl, target: '_blank', rel: 'noopener' }, run.traceId)),
            ]
          : null,
        run.shard ? [h('dt', {}, 'shard'), h('dd', {}, `${run.shard.index + 1} of ${run.shard.total} (index ${run.shard.index})`)] : null,
        run.children.length
          ? [
              h('dt', {}, 'child runs'),
              h(
                'dd',
                { id: 'run-children' },
                h(
                  'ul',
                  { class: 'children' },
                  run.children.map((c) => h('li', {}, runLink(c))),
                ),
              ),
            ]
          : null,
        hasProgress(run.progress) ? [h('dt', {}, 'progress'), h('dd', { id: 'run-progress' }, progressView(run.progress))] : null,
        h('dt', {}, 'attempts'),
        h('dd', { id: 'run-attempts' }, run.attempts, run.state === 'active' ? ` (attempt ${run.attempts + 1} running)` : ''),
        h('dt', {}, 'created'),
        h('dd', {}, time(run.createdAt)),
        run.dueAt ? [h('dt', {}, 'due'), h('dd', { id: 'run-due' }, time(run.dueAt))] : null,
        h('dt', {}, 'finished'),
        h('dd', {}, time(run.finishedAt)),
      ),
    );
    attempts.update({ rows: run.attemptList, live: [...liveJtis].filter((j) => run.claims.some((c) => c.jti === j)) }, ({ rows }) => [
      h('h2', {}, 'Attempts'),
      rows.length
        ? tableWrap(
            h(
              'table',
              { class: 'attempts' },
              head('#', 'started', 'ended', 'took', 'outcome', 'error', 'token(s)'),
              h(
                'tbody',
                {},
                rows.map((a) =>
                  h(
                    'tr',
                    { 'data-attempt': a.attempt, 'data-outcome': a.outcome },
                    h('td', { class: 'num' }, a.attempt),
                    h('td', {}, shortTime(a.startedAt)),
                    h('td', {}, shortTime(a.finishedAt)),
                    h('td', { class: 'num' }, dur(a.durationMs)),
                    h('td', {}, h('span', { class: `badge outcome-${a.outcome.replace(/\s+/g, '-')}` }, a.outcome)),
                    h('td', { class: 'error small' }, a.error ?? ''),
                    h(
                      'td',
                      { class: 'small' },
                      a.claims.length
                        ? a.claims.map((c) =>
                            h(
                              'div',
                              {},
                              h('code', { title: c.jti }, c.jti.slice(0, 8)),
                              ` ${[].concat(c.aud).join(' ')} `,
                              c.scope ? h('code', {}, c.scope) : null,
                              liveJtis.has(c.jti) ? h('span', { class: 'badge state-active' }, 'live') : null,
                            ),
                          )
                        : h('span', { class: 'muted' }, 'none'),
                    ),
                  ),
                ),
              ),
            ),
          )
        : h('p', { class: 'muted' }, 'not started yet'),
    ]);
    payload.update({ data: run.data, result: run.result, state: run.state, error: run.error }, () => [
      h('h2', {}, 'Data'),
      h('pre', { id: 'run-data' }, JSON.stringify(run.data, null, 2)),
      run.state === 'completed' ? [h('h2', {}, 'Result'), h('pre', { id: 'run-result' }, JSON.stringify(run.result, null, 2))] : null,
      run.error ? [h('h2', {}, 'Error'), h('pre', { id: 'run-error', class: 'error' }, run.error)] : null,
    ]);
    logsTitle.replaceChildren('Logs ', finished ? '' : h('small', { class: 'muted' }, '(live)'));
    renderLogs(run.logLines ?? run.logs.map((line) => ({ line, time: null, attempt: null })));
    claims.update({ claims: run.claims, live: run.claims.map((c) => liveJtis.has(c.jti)) }, () => [
      h('h2', {}, 'Tokens of this run'),
      h('p', { class: 'muted' }, 'The claims of the token each attempt ran with. The token itself is never stored or shown.'),
      run.claims.length
        ? tableWrap(
            h(
              'table',
              { class: 'claims' },
              head('attempt', 'jti', 'sub', 'aud', 'scope', 'act', 'issued', 'expires', 'now'),
              h(
                'tbody',
                {},
                run.claims.map((c) =>
                  h(
                    'tr',
                    {},
                    h('td', { class: 'num' }, c.att),
                    h('td', {}, h('code', {}, c.jti)),
                    h('td', {}, c.sub),
                    h('td', {}, [].concat(c.aud).join(' ')),
                    h('td', {}, c.scope),
                    h('td', {}, c.act ? c.act.sub : ''),
                    h('td', {}, time(new Date(c.iat * 1000).toISOString())),
                    h('td', {}, time(new Date(c.exp * 1000).toISOString())),
                    h(
                      'td',
                      {},
                      liveJtis.has(c.jti)
                        ? h('span', { class: 'badge state-active' }, 'live')
                        : h('span', { class: 'badge' }, 'revoked or expired'),
                    ),
                  ),
                ),
              ),
            ),
          )
        : h('p', { class: 'muted' }, 'no token yet (the run has not started)'),
    ]);
  };
  await render();
  if (gone) return;
  show(
    h('p', {}, h('a', { href: './' }, '← all jobs'), ' · ', h('a', { href: 'runs.html' }, 'all runs')),
    errors,
    top.el,
    facts.el,
    attempts.el,
    logsTitle,
    logs,
    payload.el,
    claims.el,
  );
  // Live while the run can change (fast), then slowly: a retry from here or elsewhere brings it back to life.
  setTimeout(() => every(() => (finished ? 5000 : 1000), render, errors), finished ? 5000 : 1000);
}

async function tokensPage() {
  const render = async () => {
    const tokens = await api('tokens');
    show(
      h('h1', {}, 'Live tokens'),
      h('p', { class: 'muted' }, 'Every run token that is live in Redis right now: metadata only, never the token. Refreshes every 2 s.'),
      tokens.length
        ? tableWrap(
            h(
              'table',
              { class: 'tokens' },
              head('job', 'run', 'attempt', 'audience', 'scope', 'jti', 'expires'),
              h(
                'tbody',
                {},
                tokens.map((t) =>
                  h(
                    'tr',
                    {},
                    h('td', {}, t.job),
                    h('td', {}, runLink(t.run)),
                    h('td', { class: 'num' }, t.att),
                    h('td', {}, t.aud.join(' ')),
                    h('td', {}, t.scope),
                    h('td', {}, h('code', {}, t.jti)),
                    h('td', {}, time(t.exp)),
                  ),
                ),
              ),
            ),
          )
        : h('p', { id: 'no-tokens' }, 'No live tokens: no run is active.'),
    );
  };
  await poll(render, 2000);
}

async function workersPage() {
  const registry = new Region('section', { id: 'worker-registry' });
  const connections = new Region('section', { id: 'worker-connections' });
  const errors = h('div', {});
  const render = async () => {
    const [workers, queues] = await Promise.all([api('workers'), api('workers/connections')]);
    registry.update(workers, (list) =>
      list.length
        ? tableWrap(
            h(
              'table',
              { class: 'registry' },
              head('', 'host', 'pid', 'versions', 'groups', 'jobs', 'active runs', 'started', 'last seen'),
              h(
                'tbody',
                {},
                list.map((w) =>
                  h(
                    'tr',
                    { 'data-worker': w.id, class: w.alive ? 'alive' : 'dead' },
                    h(
                      'td',
                      {},
                      w.alive
                        ? h('span', { class: 'badge state-completed' }, 'alive')
                        : h('span', { class: 'badge dead', title: 'no heartbeat for 15 s' }, 'dead'),
                    ),
                    h('td', {}, w.host),
                    h('td', { class: 'num' }, w.pid),
                    h('td', { class: 'small' }, `jobscope ${w.versions.jobscope} · node ${w.versions.node}`),
                    h('td', {}, w.groups.length ? w.groups.join(', ') : h('span', { class: 'muted' }, '–')),
                    h('td', { class: 'small' }, w.jobs.join(', ')),
                    h(
                      'td',
                      { class: 'small' },
                      w.active.length ? w.active.map((id) => h('div', {}, runLink(id))) : h('span', { class: 'muted' }, 'idle'),
                    ),
                    h('td', {}, time(w.startedAt)),
                    h('td', {}, time(w.lastSeen)),
                  ),
                ),
              ),
            ),
          )
        : h('p', { class: 'muted', id: 'no-workers' }, 'No worker has sent a heartbeat in the last day: start `jobscope worker`.'),
    );
    connections.update(queues, (list) =>
      tableWrap(
        h(
          'table',
          { class: 'workers' },
          head('job', 'workers', 'connections (address · connected for · idle)'),
          h(
            'tbody',
            {},
            list.map((q) =>
              h(
                'tr',
                { 'data-job': q.job },
                h('td', {}, jobLink(q.job)),
                h('td', { class: `num ${q.workers.length ? 'ok' : 'bad'}` }, q.workers.length),
                h(
                  'td',
                  {},
                  q.workers.length
                    ? h(
                        'ul',
                        {},
                        q.workers.map((w) => h('li', {}, `${w.addr ?? '?'} · ${w.age}s · idle ${w.idle}s`)),
                      )
                    : h('span', { class: 'muted' }, 'no worker connected: start `jobscope worker`'),
                ),
              ),
            ),
          ),
        ),
      ),
    );
  };
  show(
    h('h1', {}, 'Workers'),
    h(
      'p',
      { class: 'muted' },
      'Every worker process that sent a heartbeat in the last day; a worker silent for 15 s is marked dead. Refreshes every 5 s.',
    ),
    errors,
    registry.el,
    h('h2', {}, 'Queue connections'),
    h('p', { class: 'muted' }, 'The worker connections of each job queue, as Redis reports them.'),
    connections.el,
  );
  every(5000, render, errors);
}

/**
 * Basic auth has no session to end: the browser keeps the credentials until a request with others is refused. So ask
 * /logout (always 401) with made-up ones, then say so; the next page asks for a login again.
 */
async function logout() {
  loggedOut = true;
  await fetch('/logout', { headers: { authorization: `Basic ${globalThis.btoa(`logout:${Math.random()}`)}` }, cache: 'no-store' }).catch(
    () => undefined,
  );
  document.getElementById('logout')?.remove();
  document.getElementById('me').textContent = '';
  show(h('h1', {}, 'Logged out'), h('p', {}, h('a', { href: '/dashboard/' }, 'Log in again')));
}

const PAGES = { index: jobsPage, runs: runsPage, job: jobPage, run: runPage, tokens: tokensPage, workers: workersPage };

async function start() {
  const page = document.body.dataset.page;
  document.querySelector(`[data-nav="${page}"]`)?.classList.add('current');
  try {
    me = await api('me');
    document.getElementById('me').textContent = `${me.user} (${me.role === 'viewer' ? 'read-only' : me.role})`;
    document.getElementById('me').after(h('button', { type: 'button', id: 'logout', class: 'link', onclick: logout }, 'Log out'));
    document.body.classList.add(`role-${me.role}`);
    await PAGES[page]();
  } catch (err) {
    show(failure(err));
  }
}

start();
