// The Run page (/dashboard/run.html?id=<runId>): outcome, facts, one row per attempt, live logs, data and result, and
// the claims of each token it ran with; Retry and Cancel. Only the parts that changed are redrawn.
import { ApiError, api, isAdmin, post } from '../lib/api.js';
import { Region, facts, h, show, table } from '../lib/dom.js';
import { dur } from '../lib/format.js';
import { everyAfter, failure } from '../lib/live.js';
import { byText, hasProgress, jobLink, liveBadge, progressView, runBadge, runLink, shortTime, time } from '../lib/views.js';

const FINISHED = new Set(['completed', 'failed']);

const ASK = {
  retry: (runId) => `Retry run ${runId}? It runs again as your trigger.`,
  cancel: (runId) => `Cancel run ${runId}? A running attempt is aborted and its token revoked.`,
};

/** "09:03:19.042": a log line's time of day, to the millisecond. */
function logTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  return `${d.toLocaleTimeString(undefined, { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

function logRow(l) {
  return h(
    'div',
    { class: 'log-line', 'data-attempt': l.attempt ?? '' },
    h('time', { datetime: l.time ?? '', title: l.time ?? 'not recorded' }, logTime(l.time)),
    h('span', { class: 'att' }, l.attempt ? `#${l.attempt}` : ''),
    h('span', { class: 'text' }, l.line),
  );
}

/** The log lines, live: appended lines are added and the rest stays (a selection in the logs survives). */
function liveLogs() {
  const el = h('div', { id: 'run-logs', class: 'logs', tabindex: 0 });
  let shown = [];
  const render = (lines) => {
    // Anything but an append rebuilds them; so does the first batch (the placeholder goes when the first lines come).
    const appended =
      shown.length > 0 && shown.length <= lines.length && shown.every((l, i) => l.line === lines[i].line && l.time === lines[i].time);
    const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 8;
    if (appended) el.append(...lines.slice(shown.length).map(logRow));
    else el.replaceChildren(...lines.map(logRow));
    if (!lines.length) el.replaceChildren(h('div', { class: 'muted empty' }, '(no log lines yet)'));
    shown = lines;
    if (atBottom) el.scrollTop = el.scrollHeight;
  };
  return { el, render };
}

/** Title, outcome, and Retry (a failed run) or Cancel (an unfinished one) for those who may. */
function runHead(run, finished, act) {
  const button = (action, text, cls) =>
    h('button', { type: 'button', class: cls, 'data-action': action, onclick: () => act(action) }, text);
  return [
    h('h1', {}, 'Run ', h('code', {}, run.runId), ' ', h('span', { id: 'run-state' }, runBadge(run))),
    h(
      'p',
      { class: 'actions' },
      isAdmin() && run.state === 'failed' ? button('retry', 'Retry run', 'primary') : null,
      isAdmin() && !finished ? button('cancel', 'Cancel run') : null,
    ),
  ];
}

function runFacts(run) {
  const children = h(
    'ul',
    { class: 'children' },
    run.children.map((c) => h('li', {}, runLink(c))),
  );
  const trace = () => h('a', { href: run.traceUrl, target: '_blank', rel: 'noopener' }, run.traceId);
  const running = run.state === 'active' ? ` (attempt ${run.attempts + 1} running)` : '';
  return h(
    'dl',
    { class: 'facts' },
    facts([
      ['job', {}, jobLink(run.job)],
      ['trigger', { id: 'run-trigger' }, run.trigger, run.priority ? ` · priority ${run.priority}` : ''],
      ['triggered by', { id: 'run-by' }, byText(run.triggeredBy)],
      run.retriedBy ? ['retried by', { id: 'run-retried-by' }, byText(run.retriedBy)] : null,
      run.parent ? ['parent run', { id: 'run-parent' }, runLink(run.parent)] : null,
      run.traceUrl ? ['trace', { id: 'run-trace' }, trace()] : null,
      run.shard ? ['shard', {}, `${run.shard.index + 1} of ${run.shard.total} (index ${run.shard.index})`] : null,
      run.children.length ? ['child runs', { id: 'run-children' }, children] : null,
      hasProgress(run.progress) ? ['progress', { id: 'run-progress' }, progressView(run.progress)] : null,
      ['attempts', { id: 'run-attempts' }, run.attempts, running],
      ['created', {}, time(run.createdAt)],
      run.dueAt ? ['due', { id: 'run-due' }, time(run.dueAt)] : null,
      ['finished', {}, time(run.finishedAt)],
    ]),
  );
}

/** The tokens an attempt ran with: jti, audience, scope, and whether each is live. */
function attemptTokens(claims, liveJtis) {
  if (!claims.length) return h('span', { class: 'muted' }, 'none');
  return claims.map((c) =>
    h(
      'div',
      {},
      h('code', { title: c.jti }, c.jti.slice(0, 8)),
      ` ${[].concat(c.aud).join(' ')} `,
      c.scope ? h('code', {}, c.scope) : null,
      liveBadge(liveJtis.has(c.jti)),
    ),
  );
}

function attemptsView(rows, liveJtis) {
  const row = (a) =>
    h(
      'tr',
      { 'data-attempt': a.attempt, 'data-outcome': a.outcome },
      h('td', { class: 'num' }, a.attempt),
      h('td', {}, shortTime(a.startedAt)),
      h('td', {}, shortTime(a.finishedAt)),
      h('td', { class: 'num' }, dur(a.durationMs)),
      h('td', {}, h('span', { class: `badge outcome-${a.outcome.replace(/\s+/g, '-')}` }, a.outcome)),
      h('td', { class: 'error small' }, a.error ?? ''),
      h('td', { class: 'small' }, attemptTokens(a.claims, liveJtis)),
    );
  return [
    h('h2', {}, 'Attempts'),
    rows.length
      ? table('attempts', ['#', 'started', 'ended', 'took', 'outcome', 'error', 'token(s)'], rows, row)
      : h('p', { class: 'muted' }, 'not started yet'),
  ];
}

function payloadView(run) {
  return [
    h('h2', {}, 'Data'),
    h('pre', { id: 'run-data' }, JSON.stringify(run.data, null, 2)),
    run.state === 'completed' ? [h('h2', {}, 'Result'), h('pre', { id: 'run-result' }, JSON.stringify(run.result, null, 2))] : null,
    run.error ? [h('h2', {}, 'Error'), h('pre', { id: 'run-error', class: 'error' }, run.error)] : null,
  ];
}

function claimsView(claims, liveJtis) {
  const at = (seconds) => time(new Date(seconds * 1000).toISOString());
  const row = (c) =>
    h(
      'tr',
      {},
      h('td', { class: 'num' }, c.att),
      h('td', {}, h('code', {}, c.jti)),
      h('td', {}, c.sub),
      h('td', {}, [].concat(c.aud).join(' ')),
      h('td', {}, c.scope),
      h('td', {}, c.act ? c.act.sub : ''),
      h('td', {}, at(c.iat)),
      h('td', {}, at(c.exp)),
      h('td', {}, liveBadge(liveJtis.has(c.jti), h('span', { class: 'badge' }, 'revoked or expired'))),
    );
  return [
    h('h2', {}, 'Tokens of this run'),
    h('p', { class: 'muted' }, 'The claims of the token each attempt ran with. The token itself is never stored or shown.'),
    claims.length
      ? table('claims', ['attempt', 'jti', 'sub', 'aud', 'scope', 'act', 'issued', 'expires', 'now'], claims, row)
      : h('p', { class: 'muted' }, 'no token yet (the run has not started)'),
  ];
}

/** The page's parts, each redrawn only when what it shows changed. */
function runRegions() {
  return {
    top: new Region('section', { id: 'run-head' }),
    facts: new Region('section', { id: 'run-facts' }),
    attempts: new Region('section', { id: 'run-attempts-section' }),
    payload: new Region('section', { id: 'run-payload' }),
    claims: new Region('section', { id: 'run-claims' }),
    logsTitle: h('h2', {}, 'Logs'),
    logs: liveLogs(),
  };
}

/** Draws a run into the regions; `live` is the jtis of the tokens live now. */
function drawRun(r, run, live, finished, act) {
  r.top.update({ state: run.state, outcome: run.outcome, attempts: run.attempts, admin: isAdmin() }, () => runHead(run, finished, act));
  r.facts.update({ ...run, logs: undefined, logLines: undefined, attemptList: undefined, claims: undefined }, () => runFacts(run));
  const ownLive = [...live].filter((j) => run.claims.some((c) => c.jti === j));
  r.attempts.update({ rows: run.attemptList, live: ownLive }, ({ rows }) => attemptsView(rows, live));
  r.payload.update({ data: run.data, result: run.result, state: run.state, error: run.error }, () => payloadView(run));
  r.logsTitle.replaceChildren('Logs ', finished ? '' : h('small', { class: 'muted' }, '(live)'));
  r.logs.render(run.logLines ?? run.logs.map((line) => ({ line, time: null, attempt: null })));
  r.claims.update({ claims: run.claims, live: run.claims.map((c) => live.has(c.jti)) }, () => claimsView(run.claims, live));
}

export default async function runPage() {
  const runId = new URLSearchParams(location.search).get('id');
  if (!runId) return show(failure('no run id given (run.html?id=<job>:<id>)'));
  const r = runRegions();
  const errors = h('div', {});
  let finished = false;
  let gone = false;
  const act = async (action) => {
    if (!globalThis.confirm(ASK[action](runId))) return;
    await post(`runs/${encodeURIComponent(runId)}/${action}`);
    await render();
  };
  const render = async () => {
    let run;
    let tokens = [];
    try {
      [run, tokens] = await Promise.all([api(`runs/${encodeURIComponent(runId)}`), api('tokens').catch(() => [])]);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
      gone = true;
      return show(h('h1', {}, 'Run ', h('code', {}, runId)), failure(err));
    }
    finished = Boolean(run.outcome) || FINISHED.has(run.state);
    drawRun(r, run, new Set(tokens.map((t) => t.jti)), finished, act);
  };
  await render();
  if (gone) return;
  const links = h('p', {}, h('a', { href: './' }, '← all jobs'), ' · ', h('a', { href: 'runs.html' }, 'all runs'));
  show(links, errors, r.top.el, r.facts.el, r.attempts.el, r.logsTitle, r.logs.el, r.payload.el, r.claims.el);
  // Live while the run can change (fast), then slowly: a retry from here or elsewhere brings it back to life.
  everyAfter(() => (finished ? 5000 : 1000), render, errors);
}
