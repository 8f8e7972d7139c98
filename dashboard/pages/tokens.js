// The Tokens page (/dashboard/tokens.html): every run token live in Redis now; metadata only, never the token.
import { api } from '../lib/api.js';
import { h, show, table } from '../lib/dom.js';
import { poll } from '../lib/live.js';
import { runLink, time } from '../lib/views.js';

function tokenRow(t) {
  return h(
    'tr',
    {},
    h('td', {}, t.job),
    h('td', {}, runLink(t.run)),
    h('td', { class: 'num' }, t.att),
    h('td', {}, t.aud.join(' ')),
    h('td', {}, t.scope),
    h('td', {}, h('code', {}, t.jti)),
    h('td', {}, time(t.exp)),
  );
}

export default async function tokensPage() {
  const render = async () => {
    const tokens = await api('tokens');
    show(
      h('h1', {}, 'Live tokens'),
      h('p', { class: 'muted' }, 'Every run token that is live in Redis right now: metadata only, never the token. Refreshes every 2 s.'),
      tokens.length
        ? table('tokens', ['job', 'run', 'attempt', 'audience', 'scope', 'jti', 'expires'], tokens, tokenRow)
        : h('p', { id: 'no-tokens' }, 'No live tokens: no run is active.'),
    );
  };
  await poll(render, 2000);
}
