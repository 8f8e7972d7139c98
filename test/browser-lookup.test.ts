// The browser tests need no browser on the machine: with the system path hidden (JOBSCOPE_TEST_CHROMIUM pointed at a path
// that does not exist), helpers/browser.ts falls back to @sparticuz/chromium's build, which playwright-core drives headless.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { findBrowser, launchOptions, SYSTEM_CHROMIUM, systemChromium } from './helpers/browser.ts';

const saved = process.env.JOBSCOPE_TEST_CHROMIUM;
before(() => {
  process.env.JOBSCOPE_TEST_CHROMIUM = '/nonexistent/jobscope-test/chromium';
});
after(() => {
  if (saved === undefined) delete process.env.JOBSCOPE_TEST_CHROMIUM;
  else process.env.JOBSCOPE_TEST_CHROMIUM = saved;
});

test('with the system browser hidden, the npm build is found, launched headless and renders a page', async () => {
  assert.equal(systemChromium(), '/nonexistent/jobscope-test/chromium');
  const found = await findBrowser();
  assert.equal(found.source, 'npm');
  assert.ok(existsSync(found.executablePath), found.executablePath);
  console.log(`npm chromium: ${found.executablePath}${found.unpackMs ? `, unpacked in ${found.unpackMs} ms` : ', already unpacked'}`);
  const browser = await chromium.launch(launchOptions(found));
  try {
    const page = await browser.newPage();
    await page.setContent('<p id="p">fallback</p><script>document.getElementById("p").textContent += " works"</script>');
    assert.equal(await page.locator('#p').textContent(), 'fallback works');
    assert.match(browser.version(), /^\d+\./);
  } finally {
    await browser.close();
  }
});

test('a browser at the system path is used as it is', async () => {
  // Any existing file stands in for it: the lookup only decides which executable to hand to playwright-core.
  process.env.JOBSCOPE_TEST_CHROMIUM = process.execPath;
  assert.deepEqual(await findBrowser(), { source: 'system', executablePath: process.execPath, unpackMs: 0 });
  delete process.env.JOBSCOPE_TEST_CHROMIUM;
  assert.equal(systemChromium(), SYSTEM_CHROMIUM);
});
