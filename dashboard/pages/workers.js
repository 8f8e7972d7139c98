// The Workers page (/dashboard/workers.html): the executor registry (heartbeats, live and recently dead), then the Redis
// connections of each job queue.
import { api } from '../lib/api.js';
import { Region, h, show, table } from '../lib/dom.js';
import { every } from '../lib/live.js';
import { jobLink, runLink, time } from '../lib/views.js';

function workerRow(w) {
  return h(
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
    h('td', { class: 'small' }, w.active.length ? w.active.map((id) => h('div', {}, runLink(id))) : h('span', { class: 'muted' }, 'idle')),
    h('td', {}, time(w.startedAt)),
    h('td', {}, time(w.lastSeen)),
  );
}

function registryView(list) {
  if (!list.length) {
    return h('p', { class: 'muted', id: 'no-workers' }, 'No worker has sent a heartbeat in the last day: start `jobscope worker`.');
  }
  return table('registry', ['', 'host', 'pid', 'versions', 'groups', 'jobs', 'active runs', 'started', 'last seen'], list, workerRow);
}

function connectionRow(q) {
  const connections = q.workers.length
    ? h(
        'ul',
        {},
        q.workers.map((w) => h('li', {}, `${w.addr ?? '?'} · ${w.age}s · idle ${w.idle}s`)),
      )
    : h('span', { class: 'muted' }, 'no worker connected: start `jobscope worker`');
  return h(
    'tr',
    { 'data-job': q.job },
    h('td', {}, jobLink(q.job)),
    h('td', { class: `num ${q.workers.length ? 'ok' : 'bad'}` }, q.workers.length),
    h('td', {}, connections),
  );
}

function connectionsView(list) {
  return table('workers', ['job', 'workers', 'connections (address · connected for · idle)'], list, connectionRow);
}

export default async function workersPage() {
  const registry = new Region('section', { id: 'worker-registry' });
  const connections = new Region('section', { id: 'worker-connections' });
  const errors = h('div', {});
  const render = async () => {
    const [workers, queues] = await Promise.all([api('workers'), api('workers/connections')]);
    registry.update(workers, registryView);
    connections.update(queues, connectionsView);
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
