// The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core, which downloads no browser), against a running vigil:
//   node dashboard.mjs BASE_URL WATCHED_FILE PROFILE_DIR SCREENSHOT
// The test writes WATCHED_FILE (its size is the hello plugin's value) and
// waits for the page to follow: a tile for the rule, the chart, an
// incident with its evidence and report, and a new value from the feed.
// Prints "ok: ..." / "FAIL: ..." lines; exits 1 on a failure. No sleeps:
// every wait is for something on the page, with a deadline.
import { writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [base, watched, profile, shot] = process.argv.slice(2);
const WAIT = { timeout: 30000 };
let failed = 0;

function check(cond, what) {
  console.log((cond ? 'ok: ' : 'FAIL: ') + what);
  if (!cond) failed++;
}

async function step(what, fn) {
  try {
    check(await fn() !== false, what);
  } catch (e) {
    check(false, what + ': ' + e.message.split('\n')[0]);
  }
}

const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
         '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
try {
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('requestfailed', (r) => errors.push('request failed: ' + r.url()));
  const tile = '.tile[data-rule="big_file"]';

  await step('the page loads', async () => {
    const r = await page.goto(base, WAIT);
    return r.ok();
  });
  await step('the rule has a tile, coloured ok', async () => {
    await page.waitForSelector(tile + '[data-state="ok"]', WAIT);
  });
  await step('the tile shows the value and the bands', async () => {
    const text = await page.textContent(tile);
    return text.includes('10 B') && text.includes('warn > 50') &&
      text.includes('crit > 100');
  });
  await step('the live feed connects', async () => {
    await page.waitForSelector('#feed-status.on', WAIT);
  });
  await step('the metric has a chart drawn by uPlot', async () => {
    await page.waitForSelector('.chart[data-series^="hello.file.size_bytes"] ' +
                               '.uplot canvas', WAIT);
  });

  writeFileSync(watched, 'x'.repeat(500));
  await step('the incident the test caused appears', async () => {
    await page.waitForSelector('.incident[data-rule="big_file"]' +
                               '[data-open="true"]', WAIT);
  });
  await step('the tile turns critical', async () => {
    await page.waitForSelector(tile + '[data-state="critical"]', WAIT);
  });
  await step('the incident opens with its evidence, actions and report',
    async () => {
      await page.click('.incident[data-rule="big_file"] > summary');
      await page.waitForSelector('.incident[data-rule="big_file"] ' +
                                 '.evidence[data-step="good.echo"]', WAIT);
      const text = await page.textContent('.incident[data-rule="big_file"]');
      return text.includes('politely') && text.includes('ask (exec)') &&
        text.includes('# Incident');
    });

  writeFileSync(watched, 'x'.repeat(777));
  await step('a new value reaches the tile through the feed', async () => {
    await page.waitForFunction(
      (sel) => document.querySelector(sel + ' .value').textContent
        .includes('777'), tile, WAIT);
  });
  await step('the window can be changed', async () => {
    await page.selectOption('#window', '1h');
    await page.waitForSelector('.chart .uplot canvas', WAIT);
  });
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  check(errors.length === 0, 'no script errors or failed requests: ' +
        JSON.stringify(errors));
} finally {
  await context.close();
}
process.exit(failed ? 1 : 0);
