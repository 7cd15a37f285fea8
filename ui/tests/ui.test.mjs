// The web UI in a real browser (headless Debian Chromium via playwright-core)
// against a real `sonde serve` fed with metrics, traces, logs and events.
// Screenshots of every page go to ui/test-results/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, Sonde, feed, ensureResults, realAnomalies, eventBody, fmtNum, scoreColor } from './harness.mjs';

const RESULTS = ensureResults();
let sonde, feeder, browser, context;
/** console errors and page errors of the page under test */
let problems = [];

before(async () => {
  sonde = await new Sonde().start();
  feeder = await feed(sonde, { seconds: 600 });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
  });
  context = await browser.newContext({ viewport: { width: 1440, height: 900 }, colorScheme: 'dark' });
});

after(async () => {
  await feeder?.stop();
  await browser?.close();
  await sonde?.stop();
  if (!process.env.SONDE_UI_KEEP) sonde?.cleanup();
});

async function open(path) {
  const page = await context.newPage();
  problems = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  await page.goto(sonde.url + path);
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: join(RESULTS, `${name}.png`), fullPage: true });
}

function noProblems(allowed) {
  assert.deepEqual(problems.filter((p) => !allowed || !allowed.test(p)), [], 'the page logged errors');
}

test('the server serves the UI at / with cache headers, and the API still answers 404 in JSON', async () => {
  const r = await fetch(sonde.url + '/', { headers: { 'Accept-Encoding': 'gzip' } });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /text\/html/);
  assert.equal(r.headers.get('cache-control'), 'no-cache');
  const html = await r.text();
  const js = /src="(\/assets\/[^"]+\.js)"/.exec(html)[1];
  const a = await fetch(sonde.url + js);
  assert.equal(a.status, 200);
  assert.match(a.headers.get('cache-control'), /immutable/);
  // SPA routes answer with the app; unknown API paths stay JSON errors.
  assert.equal((await fetch(sonde.url + '/traces/0123456789abcdef0123456789abcdef')).status, 200);
  const api = await fetch(sonde.url + '/api/v1/nope');
  assert.equal(api.status, 404);
  assert.match(api.headers.get('content-type'), /json/);
  assert.equal((await fetch(sonde.url + '/metrics')).headers.get('content-type').includes('html'), false);
});

test('overview shows services with RED from the HTTP histograms, hosts and events', async () => {
  const page = await open('/');
  await page.waitForSelector('[data-testid=service-row]');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=host-row]').length === 2);
  await page.waitForSelector('[data-testid=events] li');
  const services = await page.$$eval('[data-testid=service-row] td:first-child', (tds) => tds.map((t) => t.textContent.trim()));
  for (const s of ['checkout', 'frontend', 'payments']) assert.ok(services.includes(s), `service ${s} in ${services}`);
  // request rate is a number, p95 a duration
  const rate = await page.$eval('[data-testid=service-row] td:nth-child(2) span', (e) => e.textContent);
  assert.match(rate, /^\d/);
  assert.equal(await page.locator('text=from http_server_request_duration_seconds').count(), 1);
  await page.waitForTimeout(500);
  await shot(page, 'overview');
  noProblems();
  await page.close();
});

test('overview and hosts sparklines are pushed: one stream for all the queries of a range and step, no polling', async () => {
  const page = await open('/overview?range=15m&refresh=1s');
  const reqs = [];
  page.on('request', (r) => reqs.push(r.url()));
  const streams = () => reqs.filter((u) => u.includes('/api/v1/stream/query_range')).map((u) => new URL(u).searchParams);
  const polls = () => reqs.filter((u) => u.includes('/api/v1/query_range'));
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=host-row]').length === 2);
  await page.waitForFunction(() => document.querySelector('[data-testid=services]')?.dataset.mode === 'push' && document.querySelector('[data-testid=hosts]')?.dataset.mode === 'push');
  // the three service sparklines and the four host ones share a stream
  // (opened again once if one list arrived after the other had subscribed)
  const opened = streams();
  assert.ok(opened.length >= 1 && opened.length <= 2, reqs.join('\n'));
  const shared = opened[opened.length - 1];
  assert.equal(shared.getAll('query').length, 7);
  assert.equal(shared.get('step'), '10');
  // and move without a poll: the host list's newest update comes from the stream
  const at = await page.$eval('[data-testid=hosts]', (e) => Number(e.dataset.updated));
  // The stream pushes at step boundaries (10 s): allow one step plus a loaded machine's delay.
  await page.waitForFunction((t) => Number(document.querySelector('[data-testid=hosts]').dataset.updated) >= t + 2000, at, { timeout: 20_000 });
  assert.deepEqual(polls(), [], 'nothing polled query_range');
  assert.equal(streams().length, opened.length, 'the stream stayed open');
  // Hosts: the list (a step of 10 s) and the host's four charts (1 s): two streams.
  reqs.length = 0;
  await page.goto(sonde.url + '/hosts?range=15m&refresh=1s');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=host-chart] canvas').length === 4);
  await page.waitForFunction(() => document.querySelector('[data-testid=hosts]')?.dataset.mode === 'push');
  await page.waitForTimeout(2500);
  const s = streams();
  assert.equal(s.length, 2, reqs.join('\n'));
  assert.deepEqual(s.map((p) => [p.get('step'), p.getAll('query').length]).sort(), [['1', 4], ['10', 4]]);
  assert.deepEqual(polls(), [], 'nothing polled query_range');
  noProblems();
  await page.close();
});

test('against a server without the stream endpoint (404), the charts and sparklines poll', async () => {
  const page = await context.newPage();
  problems = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  await page.route('**/api/v1/stream/query_range**', (route) =>
    route.fulfill({ status: 404, contentType: 'application/json', body: JSON.stringify({ status: 'error', errorType: 'not_found', error: 'not found' }) }),
  );
  let polls = 0;
  page.on('request', (r) => r.url().includes('/api/v1/query_range') && polls++);
  await page.goto(sonde.url + '/overview?range=15m&refresh=1s');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=host-row]').length === 2);
  await page.waitForFunction(() => document.querySelector('[data-testid=services]')?.dataset.mode === 'poll' && document.querySelector('[data-testid=hosts]')?.dataset.mode === 'poll');
  const n = polls;
  await page.waitForFunction((t) => Number(document.querySelector('[data-testid=hosts]').dataset.updated) >= t + 1500, Date.now());
  assert.ok(polls > n, 'query_range is polled on each tick');
  await page.goto(`${sonde.url}/explore?range=5m&refresh=1s&q=${encodeURIComponent('sum by (job) (rate(http_server_request_duration_seconds_count[30s]))')}`);
  await page.getByTestId('chart-status').getByText('polled every 1s').waitFor();
  const first = Number(await page.getByTestId('chart-status').getAttribute('data-last-ts'));
  await page.waitForFunction((t) => Number(document.querySelector('[data-testid=chart-status]').dataset.lastTs) >= t + 2, first, { timeout: 15_000 });
  noProblems(/status of 404/);
  await page.close();
});

test('the metrics explorer completes names and label values, and its chart keeps gaining points', async () => {
  const page = await open('/explore?range=5m&refresh=1s');
  const ed = page.getByTestId('promql');
  await ed.click();
  await ed.type('http_server_req');
  await page.waitForSelector('[data-testid=completions] li');
  const names = await page.$$eval('[data-testid=completions] li .mono', (l) => l.map((e) => e.textContent));
  assert.ok(names.includes('http_server_request_duration_seconds_count'), names.join(','));
  await ed.fill('');
  await ed.type('system_cpu_time_seconds_total{state="');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=completions] li .mono')].some((e) => e.textContent === 'idle'));
  await ed.fill('sum by (job) (rate(http_server_request_duration_seconds_count[30s]))');
  await page.keyboard.press('Control+Enter');
  await page.waitForSelector('[data-testid=explore-chart] canvas');
  assert.match(page.url(), /q=sum/);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=legend] li').length === 3);
  const first = Number(await page.getByTestId('chart-status').getAttribute('data-last-ts'));
  assert.ok(first > 0);
  // new points are pushed by the server (/api/v1/stream/query_range), not polled
  await page.getByTestId('chart-status').getByText('pushed by the server').waitFor();
  await page.waitForFunction((t) => Number(document.querySelector('[data-testid=chart-status]').dataset.lastTs) >= t + 2, first, { timeout: 15_000 });
  await shot(page, 'explore');
  // The URL carries the query and range: opening it again shows the same chart.
  const again = await context.newPage();
  await again.goto(page.url());
  await again.waitForFunction(() => document.querySelectorAll('[data-testid=legend] li').length === 3);
  await again.close();
  noProblems();
  await page.close();
});

test('a PromQL error shows the server message', async () => {
  const bad = 'sum(rate(http_server_request_duration_seconds_count[1m])';
  const r = await fetch(`${sonde.url}/api/v1/query_range?query=${encodeURIComponent(bad)}&start=0&end=60&step=15`);
  const msg = (await r.json()).error;
  assert.ok(msg);
  const page = await context.newPage();
  await page.goto(`${sonde.url}/explore?q=${encodeURIComponent(bad)}`);
  const box = page.getByTestId('error');
  await box.waitFor();
  const text = await box.textContent();
  assert.ok(text.includes(msg), `${text} should include ${msg}`);
  assert.ok(text.includes('bad_data'));
  // a query the server refused is not live
  assert.doesNotMatch(await page.getByTestId('chart-status').textContent(), /pushed|polled/);
  await shot(page, 'explore-error');
  await page.close();
});

test('trace search lists traces with a duration scatter; the waterfall has every span', async () => {
  const page = await open('/traces?range=15m');
  await page.waitForSelector('[data-testid=trace-row]');
  await page.waitForSelector('[data-testid=scatter] canvas');
  assert.ok((await page.$$('[data-testid=trace-row]')).length >= 20);
  await page.selectOption('[data-testid=f-service]', 'frontend');
  await page.click('button[type=submit]');
  await page.waitForURL(/service=frontend/);
  await shot(page, 'traces');
  await page.goto(`${sonde.url}/traces/${feeder.sevenSpanTrace}`);
  await page.waitForSelector('[data-testid=span-row]');
  assert.equal(await page.locator('[data-testid=span-row]').count(), 7);
  assert.equal(await page.getByTestId('span-count').textContent(), '7');
  // select the second span: its attributes and events show
  await page.locator('[data-testid=span-row]').nth(1).click();
  await page.getByTestId('span-detail').getByText('cart.validated').waitFor();
  await page.getByText('placing order').first().waitFor();
  await shot(page, 'trace');
  noProblems();
  await page.close();
});

test('logs: the live tail streams, pauses and resumes; a log jumps to its trace', async () => {
  const page = await open('/logs?range=15m');
  await page.waitForSelector('[data-testid=log-row]');
  await page.waitForFunction(() => document.querySelector('[data-testid=tail-state]')?.textContent.includes('streaming'));
  const top = () => page.$eval('[data-testid=log-row]', (e) => e.dataset.id + e.textContent);
  const first = await top();
  await page.waitForFunction((f) => {
    const e = document.querySelector('[data-testid=log-row]');
    return e && e.dataset.id + e.textContent !== f;
  }, first);
  await page.getByTestId('pause').click();
  const frozen = await top();
  await page.waitForFunction(() => /Resume \(\d+ new\)/.test(document.querySelector('[data-testid=pause]').textContent));
  assert.equal(await top(), frozen, 'a paused tail does not move');
  await shot(page, 'logs');
  await page.getByTestId('pause').click();
  await page.waitForFunction((f) => document.querySelector('[data-testid=log-row]').dataset.id + document.querySelector('[data-testid=log-row]').textContent !== f, frozen);
  // search mode, filtered
  await page.getByTestId('mode-search').click();
  await page.getByTestId('f-contains').fill('placing order');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[data-testid=log-row]')];
    return rows.length > 5 && rows.every((r) => r.textContent.includes('placing order'));
  });
  await page.locator('[data-testid=trace-link]').first().click();
  await page.waitForURL(/\/traces\/[0-9a-f]{32}/);
  await page.waitForSelector('[data-testid=span-row]');
  noProblems();
  await page.close();
});

test('hosts show per-second CPU, memory, network and disk', async () => {
  const page = await open('/hosts?range=15m');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=host-chart] canvas').length === 4);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=host-row]').length === 2);
  await page.getByRole('link', { name: 'db-1' }).last().click();
  await page.waitForURL(/host=db-1/);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=host-chart] canvas').length === 4);
  await page.waitForTimeout(300);
  await shot(page, 'hosts');
  noProblems();
  await page.close();
});

test('anomaly events mark the sparklines of their service and host, and the host\'s charts, at their times', async () => {
  // The server's own detectors may add events of their own as the feed goes on: the
  // markers of these two are told apart by their times.
  // Real events: a checkout series, and a host series without a service
  // label (the detector files it under its job, and the page under its instance).
  const real = await realAnomalies([
    { service: 'checkout', metric: 'checkout.latency', rule: 'CheckoutLatency', jumpTo: 80 },
    { service: 'sonde-agent', metric: 'host.cpu', rule: 'HostCpu', jumpTo: 30, labels: { instance: 'db-1' } },
  ]);
  const now = Date.now();
  const svcAt = now - 90_000;
  const hostAt = now - 150_000;
  await sonde.post('/v1/logs', eventBody(real.CheckoutLatency, svcAt));
  await sonde.post('/v1/logs', eventBody(real.HostCpu, hostAt));
  const svcScore = Number(real.CheckoutLatency.attributes['anomaly.score']);
  const hostScore = Number(real.HostCpu.attributes['anomaly.score']);
  const page = await open('/overview?range=15m&refresh=1s');
  const at = (sel, t) => page.$$eval(sel, (ms, t) => ms.filter((m) => Number(m.dataset.t) === t).map((m) => ({ color: m.querySelector('line')?.getAttribute('stroke') ?? m.style.color, title: m.querySelector('title')?.textContent ?? m.title })), t);
  const checkout = '[data-testid=service-row][data-service=checkout] [data-testid=spark-marker]';
  await page.waitForFunction(([sel, t]) => [...document.querySelectorAll(sel)].filter((m) => Number(m.dataset.t) === t).length === 3, [checkout, svcAt / 1000]);
  // one on each of the row's three sparklines (rate, errors, p95)
  assert.equal(await page.$$eval('[data-testid=service-row][data-service=checkout] svg.spark', (ss) => ss.filter((s) => s.querySelector('[data-testid=spark-marker]')).length), 3);
  for (const m of await at(checkout, svcAt / 1000)) {
    assert.equal(m.color, scoreColor(svcScore));
    assert.ok(m.title.includes(`(CheckoutLatency) · score ${fmtNum(svcScore, 3)}\n${real.CheckoutLatency.body}`), m.title);
  }
  assert.ok(Number(await page.$eval('[data-testid=service-row][data-service=checkout]', (r) => r.dataset.anomalies)) >= 1);
  for (const s of ['frontend', 'payments']) assert.deepEqual(await at(`[data-testid=service-row][data-service=${s}] [data-testid=spark-marker]`, svcAt / 1000), [], s);
  const db1 = '[data-testid=host-row][data-host="db-1"] [data-testid=spark-marker]';
  await page.waitForFunction(([sel, t]) => [...document.querySelectorAll(sel)].filter((m) => Number(m.dataset.t) === t).length === 3, [db1, hostAt / 1000]);
  assert.deepEqual(await at('[data-testid=host-row][data-host="web-1"] [data-testid=spark-marker]', hostAt / 1000), []);
  await shot(page, 'overview-anomalies');
  // the host's four charts, each with the marker
  await page.goto(sonde.url + '/hosts?range=15m&refresh=1s&host=db-1');
  const charts = '[data-testid=host-chart] [data-testid=chart-marker]';
  await page.waitForFunction(([sel, t]) => [...document.querySelectorAll(sel)].filter((m) => Number(m.dataset.t) === t).length === 4, [charts, hostAt / 1000], { timeout: 15_000 });
  const hostMarks = await at(charts, hostAt / 1000);
  assert.deepEqual(hostMarks.map((m) => m.color), Array(4).fill(scoreColor(hostScore)));
  for (const m of hostMarks) assert.ok(m.title.includes(`(HostCpu) · score ${fmtNum(hostScore, 3)}\n${real.HostCpu.body}`), m.title);
  await shot(page, 'hosts-anomalies');
  // web-1's have neither
  await page.goto(sonde.url + '/hosts?range=15m&refresh=1s&host=web-1');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=host-chart] [data-testid=chart-markers]').length === 4);
  // the page has the events (db-1's row in the list above shows them)...
  await page.waitForFunction(([sel, t]) => [...document.querySelectorAll(sel)].filter((m) => Number(m.dataset.t) === t).length === 3, [db1, hostAt / 1000]);
  // ...and web-1's charts do not show them
  await page.waitForTimeout(500);
  assert.deepEqual(await at(charts, hostAt / 1000), []);
  assert.deepEqual(await at(charts, svcAt / 1000), []);
  noProblems();
  await page.close();
});

test('policies are created, shown, edited and deleted from the UI', async () => {
  const page = await open('/policies');
  await page.getByText('No policies.').waitFor();
  await page.getByTestId('new-policy').click();
  await page.getByTestId('p-id').fill('checkout-debug');
  await page.selectOption('[data-testid=p-kind]', 'service');
  await page.getByTestId('p-name').fill('checkout');
  await page.getByTestId('p-sampling').fill('2');
  await page.getByTestId('p-save').click();
  // the server's validation message is shown
  await page.getByTestId('policy-editor').getByTestId('error').waitFor();
  assert.match(await page.getByTestId('policy-editor').getByTestId('error').textContent(), /0 to 1/);
  await page.getByTestId('p-sampling').fill('0.5');
  await page.getByTestId('p-save').click();
  await page.waitForSelector('[data-testid=policy-row]');
  const stored = await sonde.api('/api/v1/policies');
  assert.equal(stored.length, 1);
  assert.equal(stored[0].trace_sampling_ratio, 0.5);
  assert.deepEqual(stored[0].scope, { kind: 'service', name: 'checkout' });
  await shot(page, 'policies');
  await page.getByTestId('delete').click();
  await page.getByTestId('confirm-delete').click();
  await page.getByText('No policies.').waitFor();
  assert.equal((await sonde.api('/api/v1/policies')).length, 0);
  // the one 400 is the rejected sampling ratio of 2
  noProblems(/status of 400/);
  await page.close();
});

test('keyboard: g then a key switches pages; the light theme renders', async () => {
  const page = await open('/overview');
  await page.waitForSelector('[data-testid=service-row]');
  await page.keyboard.press('g');
  await page.keyboard.press('m');
  await page.waitForURL(/\/explore/);
  await page.keyboard.press('g');
  await page.keyboard.press('t');
  await page.waitForURL(/\/traces/);
  await page.keyboard.press('g');
  await page.keyboard.press('o');
  await page.waitForURL(/\/overview/);
  await page.keyboard.press('Shift+D');
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'light');
  await page.waitForSelector('[data-testid=host-row]');
  await page.waitForTimeout(500);
  await shot(page, 'overview-light');
  await page.keyboard.press('Shift+D');
  noProblems();
  await page.close();
});

test('when the server goes away the UI says so', async () => {
  const page = await context.newPage();
  await page.goto(sonde.url + '/explore?q=up&refresh=1s');
  await page.waitForSelector('[data-testid=chart-status]');
  await feeder.stop();
  await sonde.stop();
  await page.getByTestId('offline').getByText('Cannot reach the Sonde server').waitFor({ timeout: 10_000 });
  await shot(page, 'offline');
  await page.close();
});
