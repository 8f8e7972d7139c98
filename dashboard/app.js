/* global Node, URLSearchParams, alert */
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

async function api(path, options = {}) {
  const res = await fetch(`/api/${path}`, {
    ...options,
    headers: { Accept: 'application/json', ...(options.body ? { 'Content-Type': 'application/json' } : {}) },
    credentials: 'same-origin',
  });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

const isAdmin = () => me.role === 'admin';

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

// ---------- pages ----------

async function jobsPage() {
  const render = async () => {
    const jobs = await api('jobs');
    const rows = jobs.map((job) => {
      const detail = h('tr', { class: 'detail', hidden: true }, h('td', { colspan: 7 }));
      const toggle = async () => {
        detail.hidden = !detail.hidden;
        if (detail.hidden) return;
        const cell = detail.firstChild;
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
                      h(
                        'li',
                        {},
                        runBadge(r),
                        ' ',
                        runLink(r.runId),
                        ' ',
                        h('span', { class: 'muted' }, r.trigger, ' · ', when(r.createdAt)),
                      ),
                    ),
                  )
                : h('p', { class: 'muted' }, 'no runs yet'),
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
      const actions = h(
        'td',
        { class: 'actions' },
        h('button', { type: 'button', onclick: toggle, 'data-action': 'open' }, isAdmin() ? 'Run now…' : 'Details'),
        isAdmin()
          ? h(
              'button',
              {
                type: 'button',
                'data-action': job.paused ? 'resume' : 'pause',
                onclick: async () => {
                  await api(`jobs/${encodeURIComponent(job.name)}/${job.paused ? 'resume' : 'pause'}`, { method: 'POST' });
                  await render();
                },
              },
              job.paused ? 'Resume' : 'Pause',
            )
          : null,
      );
      return [
        h(
          'tr',
          { 'data-job': job.name },
          h('td', {}, h('strong', {}, job.name), h('div', { class: 'muted' }, job.description)),
          h(
            'td',
            {},
            job.scheduleText,
            job.nextRuns.length
              ? h(
                  'ul',
                  { class: 'next' },
                  job.nextRuns.slice(0, 3).map((t) => h('li', {}, time(t))),
                )
              : null,
          ),
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
          actions,
        ),
        detail,
      ];
    });
    show(
      h('h1', {}, 'Jobs'),
      h(
        'table',
        { class: 'jobs' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['Job', 'Schedule (next fire times)', 'State', 'Last run', 'Succeeded', 'Failed', ''].map((t) => h('th', {}, t)),
          ),
        ),
        h('tbody', {}, rows.flat()),
      ),
      h(
        'p',
        { class: 'muted' },
        'Succeeded/failed count the runs Redis still keeps (7 and 30 days). Everything else about a run: ',
        h('a', { href: 'queues/' }, 'Bull Board'),
        '.',
      ),
    );
  };
  await render();
}

async function runPage() {
  const runId = new URLSearchParams(location.search).get('id');
  if (!runId) return show(failure('no run id given (run.html?id=<job>:<id>)'));
  let timer;
  const render = async () => {
    let run;
    let live = [];
    try {
      [run, live] = await Promise.all([api(`runs/${encodeURIComponent(runId)}`), api('tokens').catch(() => [])]);
    } catch (err) {
      show(h('h1', {}, 'Run ', h('code', {}, runId)), failure(err));
      // An unknown run stays unknown; anything else (a restart, a network blip) is retried.
      if (!(err instanceof ApiError && err.status === 404)) timer = setTimeout(render, 2000);
      return;
    }
    const liveJtis = new Set(live.map((t) => t.jti));
    const finished = Boolean(run.outcome) || FINISHED.has(run.state);
    const duration =
      run.startedAt && run.finishedAt ? `${((new Date(run.finishedAt) - new Date(run.startedAt)) / 1000).toFixed(2)} s` : null;
    show(
      h('h1', {}, 'Run ', h('code', {}, run.runId), ' ', h('span', { id: 'run-state' }, runBadge(run))),
      h(
        'p',
        {},
        h('a', { href: './' }, '← all jobs'),
        ' · job ',
        h('strong', {}, run.job),
        ' · trigger ',
        run.trigger,
        ' · attempts ',
        h('span', { id: 'run-attempts' }, run.attempts),
        run.state === 'active' ? ` (attempt ${run.attempts + 1} running)` : '',
        run.priority ? ` · priority ${run.priority}` : '',
      ),
      isAdmin() && !finished
        ? h(
            'button',
            {
              type: 'button',
              'data-action': 'cancel',
              onclick: async () => {
                await api(`runs/${encodeURIComponent(run.runId)}/cancel`, { method: 'POST' }).catch((err) => alert(err.message));
                await render();
              },
            },
            'Cancel run',
          )
        : null,
      h('h2', {}, 'Timeline'),
      h(
        'dl',
        { class: 'timeline' },
        h('dt', {}, 'created'),
        h('dd', {}, time(run.createdAt)),
        run.dueAt ? [h('dt', {}, 'due'), h('dd', { id: 'run-due' }, time(run.dueAt))] : null,
        h('dt', {}, 'started'),
        h('dd', {}, time(run.startedAt)),
        h('dt', {}, 'finished'),
        h('dd', {}, time(run.finishedAt), duration ? ` · took ${duration}` : ''),
      ),
      h('h2', {}, 'Data'),
      h('pre', { id: 'run-data' }, JSON.stringify(run.data, null, 2)),
      run.state === 'completed' ? [h('h2', {}, 'Result'), h('pre', { id: 'run-result' }, JSON.stringify(run.result, null, 2))] : null,
      run.error ? [h('h2', {}, 'Error'), h('pre', { id: 'run-error', class: 'error' }, run.error)] : null,
      h('h2', {}, 'Logs ', finished ? null : h('small', { class: 'muted' }, '(live)')),
      h('pre', { id: 'run-logs', class: 'logs' }, run.logs.length ? run.logs.join('\n') : '(no log lines yet)'),
      h('h2', {}, 'Tokens of this run'),
      h('p', { class: 'muted' }, 'The claims of the token each attempt ran with. The token itself is never stored or shown.'),
      run.claims.length
        ? h(
            'table',
            { class: 'claims' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['attempt', 'jti', 'sub', 'aud', 'scope', 'issued', 'expires', 'now'].map((t) => h('th', {}, t)),
              ),
            ),
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
          )
        : h('p', { class: 'muted' }, 'no token yet (the run has not started)'),
    );
    const logs = document.getElementById('run-logs');
    logs.scrollTop = logs.scrollHeight;
    clearTimeout(timer);
    // Poll while the run can still change; a finished run's page is static.
    if (!finished) timer = setTimeout(render, 1000);
  };
  await render();
}

async function tokensPage() {
  const render = async () => {
    const tokens = await api('tokens');
    show(
      h('h1', {}, 'Live tokens'),
      h('p', { class: 'muted' }, 'Every run token that is live in Redis right now: metadata only, never the token. Refreshes every 2 s.'),
      tokens.length
        ? h(
            'table',
            { class: 'tokens' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['job', 'run', 'attempt', 'audience', 'scope', 'jti', 'expires'].map((t) => h('th', {}, t)),
              ),
            ),
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
          )
        : h('p', { id: 'no-tokens' }, 'No live tokens: no run is active.'),
    );
  };
  await poll(render, 2000);
}

async function workersPage() {
  const render = async () => {
    const queues = await api('workers');
    show(
      h('h1', {}, 'Workers'),
      h('p', { class: 'muted' }, 'Worker connections per job queue, as Redis reports them. Refreshes every 5 s.'),
      h(
        'table',
        { class: 'workers' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['job', 'workers', 'connections (address · connected for · idle)'].map((t) => h('th', {}, t)),
          ),
        ),
        h(
          'tbody',
          {},
          queues.map((q) =>
            h(
              'tr',
              { 'data-job': q.job },
              h('td', {}, q.job),
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
    );
  };
  await poll(render, 5000);
}

const PAGES = { index: jobsPage, run: runPage, tokens: tokensPage, workers: workersPage };

async function start() {
  const page = document.body.dataset.page;
  document.querySelector(`[data-nav="${page}"]`)?.classList.add('current');
  try {
    me = await api('me');
    document.getElementById('me').textContent = `${me.user} (${me.role === 'admin' ? 'admin' : 'read-only'})`;
    document.body.classList.add(`role-${me.role}`);
    await PAGES[page]();
  } catch (err) {
    show(failure(err));
  }
}

start();
