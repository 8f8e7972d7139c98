// The one place the browser tests find a Chromium: the system's (Debian's /usr/bin/chromium) when it is there, else the
// build inside the dev dependency @sparticuz/chromium (from the npm registry, unpacked here on first use), so that
// `npm install && npm test` needs no browser on the machine. JOBSCOPE_TEST_CHROMIUM=<path> replaces the system path looked
// at: a path that does not exist proves the npm fallback (.ci/run does that).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { brotliDecompressSync } from 'node:zlib';
import type { LaunchOptions } from 'playwright-core';

export const SYSTEM_CHROMIUM = '/usr/bin/chromium';

/** What headless Chromium needs here: no sandbox (root in a container), no GPU, and nothing fetched from the network. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface TestBrowser {
  /** 'system': the path looked at first; 'npm': @sparticuz/chromium's build. */
  source: 'system' | 'npm';
  executablePath: string;
  /** For playwright-core's launch options (the npm build's own libraries and fonts). */
  env?: Record<string, string>;
  /** How long the first use took to unpack the npm build (0 when it was already unpacked). */
  unpackMs: number;
}

const require = createRequire(import.meta.url);

/** @sparticuz/chromium's folder (its package.json is not exported: up from its entry point, build/<format>/index). */
function packageDir(): string {
  let dir = path.dirname(require.resolve('@sparticuz/chromium'));
  while (!existsSync(path.join(dir, 'bin', 'chromium.br')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

/** The system path looked at first: JOBSCOPE_TEST_CHROMIUM or /usr/bin/chromium. */
export function systemChromium(): string {
  return process.env.JOBSCOPE_TEST_CHROMIUM || SYSTEM_CHROMIUM;
}

function untar(file: string, dir: string): void {
  // Decompressed whole (about 4 MB) and handed to tar at once: streamed into tar's stdin, tar could exit at the end of the
  // archive before the trailing padding was written, and the pipe's close failed the unpack ("Premature close").
  const result = spawnSync('tar', ['-x', '-C', dir], {
    input: brotliDecompressSync(readFileSync(file)),
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`tar exited with ${result.status} for ${file}: ${String(result.stderr)}`);
}

/**
 * Unpacks @sparticuz/chromium's build into a directory of its own per version (not the package's shared /tmp/chromium,
 * which another version or a half-finished unpack of another process may hold): into a private directory first, then
 * renamed into place, so concurrent test processes never run a half-written binary. Also unpacks the package's NSS and
 * expat libraries (al2023.tar.br, meant for AWS Lambda) so the build does not need Debian's libnss3 on the machine.
 */
async function unpackNpmChromium(): Promise<{ dir: string; ms: number }> {
  const pkg = packageDir();
  const version = (JSON.parse(readFileSync(path.join(pkg, 'package.json'), 'utf8')) as { version: string }).version;
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const dir = path.join(os.tmpdir(), `jobscope-chromium-${version}-${uid}`);
  if (existsSync(path.join(dir, 'chromium'))) return { dir, ms: 0 };
  const started = Date.now();
  const work = `${dir}.${process.pid}.tmp`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  // The package unpacks into os.tmpdir() (read from TMPDIR when it starts its unpacking, synchronously): point it at ours.
  const { default: npmChromium } = await import('@sparticuz/chromium');
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = work;
  let unpacked: Promise<string>;
  try {
    unpacked = npmChromium.executablePath();
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
  await unpacked;
  untar(path.join(pkg, 'bin', 'al2023.tar.br'), work);
  try {
    renameSync(work, dir);
  } catch (err) {
    // Another process finished first: use its copy.
    rmSync(work, { recursive: true, force: true });
    if (!existsSync(path.join(dir, 'chromium'))) throw err;
  }
  return { dir, ms: Date.now() - started };
}

/** The system Chromium when it exists, else the npm one (unpacked on first use). */
export async function findBrowser(): Promise<TestBrowser> {
  const system = systemChromium();
  if (existsSync(system)) return { source: 'system', executablePath: system, unpackMs: 0 };
  const { dir, ms } = await unpackNpmChromium();
  // The package's fonts.conf names /tmp/fonts, where its own unpacking would put the fonts: ours are in dir/fonts/fonts.
  // Without a font it can find, this build aborts the page (FATAL in SkFontMgr_FontConfigInterface) on its first text.
  writeFileSync(
    path.join(dir, 'fonts', 'fonts.conf'),
    `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n  <dir>${path.join(dir, 'fonts', 'fonts')}</dir>\n` +
      `  <cachedir>${path.join(dir, 'fonts-cache')}</cachedir>\n</fontconfig>\n`,
  );
  return {
    source: 'npm',
    executablePath: path.join(dir, 'chromium'),
    env: {
      ...(process.env as Record<string, string>),
      LD_LIBRARY_PATH: [path.join(dir, 'lib'), process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
      FONTCONFIG_PATH: path.join(dir, 'fonts'),
      // With LANG=C (a container's usual locale) this build reports the language 'en-US@posix', which Intl rejects
      // ("Invalid language tag"): the pages' date formatting, and uPlot with it, would throw.
      LANG: 'en_US.UTF-8',
    },
    unpackMs: ms,
  };
}

/** Launch options for playwright-core with the browser found. */
export function launchOptions(browser: TestBrowser): Pick<LaunchOptions, 'executablePath' | 'args' | 'headless' | 'env'> {
  return { executablePath: browser.executablePath, args: CHROMIUM_ARGS, headless: true, ...(browser.env ? { env: browser.env } : {}) };
}
