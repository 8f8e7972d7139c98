// jobscope's own pages: one HTML template (dashboard/page.html) served for every page's address with the page's name
// and title filled in, the ES modules and styles beside it as static files (no build step), and the chart library they
// use (uPlot), served from its installed package: nothing is fetched from a CDN.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type RequestHandler, type Router } from 'express';

/** dashboard/ at the package root: two levels up from src/server/ and from dist/server/ alike. */
export const DASHBOARD_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dashboard');

/** uPlot's dist/ folder (uPlot.esm.js, uPlot.min.css), wherever npm installed it. */
export const UPLOT_DIR = path.dirname(createRequire(import.meta.url).resolve('uplot'));

/** The template every page is: `{{page}}` (its module is dashboard/pages/<page>.js) and `{{title}}` are filled in. */
export const PAGE_TEMPLATE = 'page.html';

/** Each page: its address under /dashboard, its name (`<body data-page>`, the module pages/<page>.js), its title. */
export const PAGES: { path: string; page: string; title: string }[] = [
  { path: '/', page: 'jobs', title: 'Jobs' },
  { path: '/index.html', page: 'jobs', title: 'Jobs' },
  { path: '/runs.html', page: 'runs', title: 'Runs' },
  { path: '/job.html', page: 'job', title: 'Job' },
  { path: '/run.html', page: 'run', title: 'Run' },
  { path: '/tokens.html', page: 'tokens', title: 'Live tokens' },
  { path: '/workers.html', page: 'workers', title: 'Workers' },
];

/** The page as HTML. The template is read on each request (pages are loaded rarely; the pages poll the API), so an edit shows at once. */
function page(template: string, name: string, title: string): RequestHandler {
  return async (_req, res) => {
    const html = (await readFile(template, 'utf8')).replaceAll('{{page}}', name).replaceAll('{{title}}', title);
    // No caching of the pages: after an upgrade the browser must not mix an old page with a new API (the ETag revalidates).
    res.set('Cache-Control', 'no-cache').type('html').send(html);
  };
}

export function dashboardPages(dir = DASHBOARD_DIR): Router {
  const template = path.join(dir, PAGE_TEMPLATE);
  if (!existsSync(template)) throw new Error(`dashboard pages not found in ${dir}`);
  const router = express.Router();
  for (const p of PAGES) router.get(p.path, page(template, p.page, p.title));
  // Any other .html (the template itself included) is no page: the app's 404.
  router.use((req, _res, next) => next(req.path.endsWith('.html') ? 'router' : undefined));
  // The library changes only with an upgrade: a day's caching, revalidated after.
  router.use('/vendor/uplot', express.static(UPLOT_DIR, { index: false, redirect: false, maxAge: '1d' }));
  // No caching of the modules and styles either, for the same reason as the pages.
  router.use(express.static(dir, { index: false, redirect: false, setHeaders: (res) => res.setHeader('Cache-Control', 'no-cache') }));
  return router;
}
