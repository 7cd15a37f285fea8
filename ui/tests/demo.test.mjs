// The web UI against `sonde demo` (the server, a simulated shop and the
// host agent): every page loads without console errors and shows the
// demo's data. Skipped when the binary has no demo command, or with
// SONDE_UI_DEMO=0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, Sonde, ensureResults, hasDemo } from './harness.mjs';

const RESULTS = ensureResults();
const skip = process.env.SONDE_UI_DEMO === '0' ? 'SONDE_UI_DEMO=0' : !hasDemo() ? 'this sonde has no demo command' : false;
let sonde, browser, context;
let problems = [];

before(async () => {
  if (skip) return;
  sonde = await new Sonde('demo').start();
  // Wait for the shop's spans and the agent's first metrics.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const services = await sonde.api('/api/v1/services').catch(() => []);
    const names = await sonde.api('/api/v1/label/__name__/values').catch(() => []);
    if (services.some((s) => s.signals.traces.spans > 0) && names.includes('system_cpu_time_seconds_total') && names.some((n) => n.startsWith('http_server'))) break;
    if (Date.now() > deadline) throw new Error('the demo sent no spans, HTTP metrics or host metrics within 30 s');
    await new Promise((r) => setTimeout(r, 500));
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
  });
  context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
});

after(async () => {
  await browser?.close();
  await sonde?.stop();
  sonde?.cleanup();
});

async function open(path) {
  const page = await context.newPage();
  problems = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  await page.goto(sonde.url + path);
  return page;
}

const shot = (page, name) => page.screenshot({ path: join(RESULTS, `demo-${name}.png`), fullPage: true });

test('demo: overview, explorer, traces, waterfall, logs, hosts and policies show live demo data', { skip }, async () => {
  let page = await open('/overview?range=5m');
  await page.waitForSelector('[data-testid=service-row]');
  await page.waitForSelector('[data-testid=host-row]');
  await page.waitForTimeout(1000);
  await shot(page, 'overview');
  assert.deepEqual(problems, []);
  await page.close();

  page = await open(`/explore?range=5m&q=${encodeURIComponent('sum by (job) (rate(http_server_request_duration_seconds_count[1m]))')}`);
  await page.waitForSelector('[data-testid=explore-chart] canvas');
  const first = Number(await page.getByTestId('chart-status').getAttribute('data-last-ts'));
  await page.waitForFunction((t) => Number(document.querySelector('[data-testid=chart-status]').dataset.lastTs) >= t + 2, first, { timeout: 15_000 });
  await shot(page, 'explore');
  assert.deepEqual(problems, []);
  await page.close();

  page = await open('/traces?range=5m');
  await page.waitForSelector('[data-testid=trace-row]');
  await shot(page, 'traces');
  const href = await page.locator('[data-testid=trace-row] a').first().getAttribute('href');
  const id = /\/traces\/([0-9a-f]{32})/.exec(href)[1];
  await page.goto(sonde.url + href);
  await page.waitForSelector('[data-testid=span-row]');
  // A live trace may still be gaining spans from other services: compare
  // the page with the API once both have seen the same spans.
  let trace = await sonde.api(`/api/v1/traces/${id}`);
  for (let i = 0; i < 10 && await page.locator('[data-testid=span-row]').count() !== trace.spans.length; i++) {
    await page.waitForTimeout(500);
    await page.reload();
    await page.waitForSelector('[data-testid=span-row]');
    trace = await sonde.api(`/api/v1/traces/${id}`);
  }
  assert.equal(await page.locator('[data-testid=span-row]').count(), trace.spans.length);
  await shot(page, 'trace');
  assert.deepEqual(problems, []);
  await page.close();

  page = await open('/logs?range=5m');
  await page.waitForSelector('[data-testid=log-row]');
  await shot(page, 'logs');
  await page.close();
  assert.deepEqual(problems, []);

  page = await open('/hosts?range=5m');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=host-chart] canvas').length >= 3);
  await page.waitForTimeout(1000);
  await shot(page, 'hosts');
  assert.deepEqual(problems, []);
  await page.close();

  page = await open('/policies');
  await page.waitForSelector('[data-testid=clients], [data-testid=empty]');
  await shot(page, 'policies');
  assert.deepEqual(problems, []);
  await page.close();
});
