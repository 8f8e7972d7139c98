// jobscope's pages: plain ES modules, no framework, no build step. The server serves one page (page.html) for every
// page's address with <body data-page> filled in (src/server/dashboard.ts lists them); this module logs the reader in
// (GET /api/me) and starts that page's module, pages/<page>.js (jobs, runs, job, run, tokens, workers). Shared pieces are
// in lib/: dom (building nodes, never innerHTML), api, live (polling), format, views, forms, chart.
import { api, me, stopAsking } from './lib/api.js';
import { h, show } from './lib/dom.js';
import { failure } from './lib/live.js';

/**
 * Basic auth has no session to end: the browser keeps the credentials until a request with others is refused. So ask
 * /logout (always 401) with made-up ones, then say so; the next page asks for a login again.
 */
async function logout() {
  stopAsking();
  await fetch('/logout', { headers: { authorization: `Basic ${globalThis.btoa(`logout:${Math.random()}`)}` }, cache: 'no-store' }).catch(
    () => undefined,
  );
  document.getElementById('logout')?.remove();
  document.getElementById('me').textContent = '';
  show(h('h1', {}, 'Logged out'), h('p', {}, h('a', { href: '/dashboard/' }, 'Log in again')));
}

async function start() {
  const page = document.body.dataset.page;
  document.querySelector(`[data-nav="${page}"]`)?.classList.add('current');
  try {
    // The page's module loads while the login is asked (page.html preloads it).
    const pageModule = import(`./pages/${page}.js`);
    Object.assign(me, await api('me'));
    document.getElementById('me').textContent = `${me.user} (${me.role === 'viewer' ? 'read-only' : me.role})`;
    document.getElementById('me').after(h('button', { type: 'button', id: 'logout', class: 'link', onclick: logout }, 'Log out'));
    document.body.classList.add(`role-${me.role}`);
    const { default: run } = await pageModule;
    await run();
  } catch (err) {
    show(failure(err));
  }
}

start();
