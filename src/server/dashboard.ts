// jobscope's own pages: static files from the package's dashboard/ folder (plain HTML + one ES module, no build step), and
// the chart library they use (uPlot), served from its installed package: nothing is fetched from a CDN.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type Router } from 'express';

/** dashboard/ at the package root: two levels up from src/server/ and from dist/server/ alike. */
export const DASHBOARD_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dashboard');

/** uPlot's dist/ folder (uPlot.esm.js, uPlot.min.css), wherever npm installed it. */
export const UPLOT_DIR = path.dirname(createRequire(import.meta.url).resolve('uplot'));

export function dashboardPages(dir = DASHBOARD_DIR): Router {
  if (!existsSync(path.join(dir, 'index.html'))) throw new Error(`dashboard pages not found in ${dir}`);
  const router = express.Router();
  // The library changes only with an upgrade: a day's caching, revalidated after.
  router.use('/vendor/uplot', express.static(UPLOT_DIR, { index: false, redirect: false, maxAge: '1d' }));
  // No caching of the pages: after an upgrade the browser must not mix an old page with a new API.
  router.use(
    express.static(dir, { index: 'index.html', redirect: false, setHeaders: (res) => res.setHeader('Cache-Control', 'no-cache') }),
  );
  return router;
}
