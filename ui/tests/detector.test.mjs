// The anomalies page on events the real detector produced, not hand-built
// ones: a `sonde serve` learns ten minutes of a steady gauge from its store
// (an anomaly rule loaded after the history arrived), sees the gauge jump,
// and files an `anomaly.detected` event; the page must show that event
// with its rule, service, score and the detector's own explanation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';
import { CHROMIUM, Sonde, ensureResults, gaugeBody } from './harness.mjs';

const RESULTS = ensureResults();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let sonde, browser, dir, detected, jumpAt, allEvents;

/// A steady queue of about 10, with a little noise, at `ms`.
const steady = (ms) => 10 + ((ms / 1000) % 7) * 0.1;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sonde-detector-'));
  sonde = await new Sonde('serve', {
    args: ['--rule-files', join(dir, '*.yml'), '--anomaly-detection', 'off'],
  }).start();
  // Ten minutes of history, one point a second.
  const now = Date.now();
  const history = [];
  for (let t = now - 600_000; t < now; t += 1000) history.push([t, steady(t)]);
  for (let i = 0; i < history.length; i += 200) {
    await sonde.post('/v1/metrics', gaugeBody('orders', 'orders.queue.depth', history.slice(i, i + 200)));
  }
  // The rule comes after the history, so its detector learns it from the
  // store before its first evaluation.
  writeFileSync(
    join(dir, 'rules.yml'),
    [
      'groups:',
      '  - name: detector',
      '    interval: 250ms',
      '    rules:',
      '      - alert: QueueDepthAnomaly',
      '        expr: orders_queue_depth{job="orders"}',
      '        anomaly: {score_above: 0.25, step: 1s}',
      '        annotations: {summary: unusual queue depth}',
      '',
    ].join('\n'),
  );
  const reload = await fetch(sonde.url + '/-/reload', { method: 'POST' });
  assert.equal(reload.status, 200, await reload.text());
  // Live: steady for a few seconds, then the queue jumps eightfold.
  const deadline = Date.now() + 60_000;
  let jumped = false;
  const started = Date.now();
  while (Date.now() < deadline) {
    const t = Date.now();
    if (!jumped && t - started > 4000) {
      jumped = true;
      jumpAt = t;
    }
    await sonde.post('/v1/metrics', gaugeBody('orders', 'orders.queue.depth', [[t, jumped ? 80 : steady(t)]]));
    const events = await (await fetch(sonde.url + '/api/v1/events?name=anomaly.detected&limit=10')).json();
    allEvents = events.data.logs;
    detected = allEvents.find((e) => e.attributes['alert.rule'] === 'QueueDepthAnomaly');
    if (detected) break;
    await sleep(250);
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await sonde?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('the detector found the jump, and only after it', () => {
  assert.ok(detected, 'no anomaly.detected event from the real detector within 60 s');
  const before = allEvents.filter((e) => Number(BigInt(e.timeUnixNano) / 1_000_000n) < jumpAt);
  assert.deepEqual(before, [], 'an anomaly while the queue was steady');
  assert.ok(Number(detected.attributes['anomaly.score']) >= 0.25, JSON.stringify(detected));
  assert.ok(Number(detected.attributes['anomaly.observed']) === 80, JSON.stringify(detected));
  assert.ok(Number(detected.attributes['anomaly.expected_high']) < 80, JSON.stringify(detected));
  assert.match(detected.body, /observed 80 above the expected range/);
});

test('anomalies page: the real event with its rule, service, score and explanation', async () => {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(sonde.url + '/anomalies?range=15m');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=anomaly-row]').length >= 1, null, { timeout: 20_000 });
  const row = await page.$eval('[data-testid=anomaly-row]', (r) => r.textContent);
  assert.match(row, /QueueDepthAnomaly/);
  assert.match(row, /orders/);
  const shown = Number(/^\s*(\d+\.\d+)/.exec(row)?.[1]);
  assert.ok(Math.abs(shown - Number(detected.attributes['anomaly.score'])) < 0.01, row);
  await page.locator('[data-testid=anomaly-row] button').first().click();
  await page.waitForSelector('.anomaly.open .kv');
  const details = await page.$eval('.anomaly.open', (e) => e.textContent);
  assert.match(details, /above the expected range/);
  await page.screenshot({ path: join(RESULTS, 'anomalies-detector.png'), fullPage: true });
  assert.deepEqual(problems, []);
  await page.close();
});
