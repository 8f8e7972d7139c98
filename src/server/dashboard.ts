// jobscope's own pages: static files from the package's dashboard/ folder (plain HTML + one ES module, no build step).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type RequestHandler } from 'express';

/** dashboard/ at the package root: two levels up from src/server/ and from dist/server/ alike. */
export const DASHBOARD_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dashboard');

export function dashboardPages(dir = DASHBOARD_DIR): RequestHandler {
  if (!existsSync(path.join(dir, 'index.html'))) throw new Error(`dashboard pages not found in ${dir}`);
  // No caching of the pages: after an upgrade the browser must not mix an old page with a new API.
  return express.static(dir, { index: 'index.html', redirect: false, setHeaders: (res) => res.setHeader('Cache-Control', 'no-cache') });
}
