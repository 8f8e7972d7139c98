// The Runs page (/dashboard/runs.html): every kept run of every job, filtered; the filters are in the address.
import { api } from '../lib/api.js';
import { Region, h, show } from '../lib/dom.js';
import { localValue } from '../lib/format.js';
import { every, failure } from '../lib/live.js';
import { runsTable } from '../lib/views.js';

const OUTCOME_CHOICES = ['completed', 'failed', 'timeout', 'cancelled', 'skipped', 'misfire'];
const STATE_CHOICES = ['active', 'waiting', 'delayed', 'prioritized', 'waiting-children'];
const TRIGGER_CHOICES = ['manual', 'api', 'schedule', 'parent', 'retry', 'misfire', 'shard'];
const PAGE = 50;

/** The filter inputs, set from the address's query. */
function filterInputs(params, jobs) {
  const select = (name, choices) =>
    h(
      'select',
      { name, id: `filter-${name}` },
      h('option', { value: '' }, 'any'),
      choices.map((c) => h('option', { value: c, selected: params.get(name) === c }, c)),
    );
  const moment = (name) => h('input', { type: 'datetime-local', name, id: `filter-${name}`, step: 1, value: localValue(params.get(name)) });
  return {
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
    from: moment('from'),
    to: moment('to'),
  };
}

/** The query the filled-in filters make (times as ISO instants). */
function queryOf(inputs) {
  const q = new URLSearchParams();
  for (const [name, input] of Object.entries(inputs)) {
    const value = input.value.trim();
    if (!value) continue;
    q.set(name, name === 'from' || name === 'to' ? new Date(value).toISOString() : value);
  }
  return q;
}

function filterForm(inputs, onsubmit) {
  const field = (label, input) => h('label', { for: input.id }, h('span', {}, label), input);
  return h(
    'form',
    { class: 'filters', onsubmit },
    field('job', inputs.job),
    field('outcome / state', inputs.state),
    field('trigger', inputs.trigger),
    field('triggered by', inputs.by),
    field('from', inputs.from),
    field('to', inputs.to),
    h('button', { type: 'submit', class: 'primary' }, 'Filter'),
  );
}

/** The list: its first page, refreshed; "More" appends the next ones, and the refresh then leaves the list alone. */
function runsList(inputs) {
  const list = new Region('div', { id: 'runs-list' });
  const more = h('div', { id: 'runs-more' });
  let next = null;
  let pages = 1;
  const moreButton = (cursor) => {
    next = cursor;
    more.replaceChildren(...(next ? [h('button', { type: 'button', 'data-action': 'more', onclick: loadMore }, 'More')] : []));
  };
  const first = async () => {
    const page = await api(`runs?${queryOf(inputs)}&limit=${PAGE}`);
    // After "More" the list grows; the refresh then leaves it alone instead of cutting it back to one page.
    if (pages > 1) return;
    list.update(page.runs, (runs) => (runs.length ? runsTable(runs) : h('p', { class: 'muted', id: 'no-runs' }, 'No run matches.')));
    moreButton(page.next);
  };
  const loadMore = async () => {
    const page = await api(`runs?${queryOf(inputs)}&limit=${PAGE}&cursor=${encodeURIComponent(next)}`);
    pages++;
    list.el.querySelector('table.runs tbody')?.append(...runsTable(page.runs).querySelectorAll('tbody tr'));
    moreButton(page.next);
  };
  const restart = () => {
    pages = 1;
    list.key = undefined;
    return first();
  };
  return { list, more, first, restart };
}

export default async function runsPage() {
  const jobs = await api('jobs');
  const inputs = filterInputs(new URLSearchParams(location.search), jobs);
  const runs = runsList(inputs);
  const errors = h('div', {});
  const form = filterForm(inputs, async (event) => {
    event.preventDefault();
    const q = queryOf(inputs);
    history.replaceState(null, '', `runs.html${q.size ? `?${q}` : ''}`);
    await runs.restart().catch((err) => errors.replaceChildren(failure(err)));
  });
  show(
    h('h1', {}, 'Runs'),
    h('p', { class: 'muted' }, 'Every kept run of every job, newest first (unfinished runs on top). Refreshes every 5 s.'),
    form,
    errors,
    runs.list.el,
    runs.more,
  );
  every(5000, runs.first, errors);
}
