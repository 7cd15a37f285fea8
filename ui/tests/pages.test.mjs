// Alerts, anomalies and the service map in a real browser against a
// `sonde serve` started with a rule file and fed CLIENT/SERVER span pairs
// across services, `anomaly.detected` events (of checkout, and of orders,
// which is on the service map) and a gauge of orders to chart. The events
// are the real detector's (`realAnomalies`: a fixture server's detectors
// see gauges jump), posted here at set times so the pages' order and
// markers can be checked; scores, explanations and attributes are the
// detector's own.
//
// When the binary embeds an older bundle than crates/server/ui-dist (the
// Rust side not rebuilt since `npm run build`), the browser is served the
// bundle from disk instead, so these pages can be tested before the rebuild.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, writeFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';
import { CHROMIUM, Sonde, UI, ensureResults, graphTraceBody, gaugeBody, realAnomalies, eventBody, fmtNum, scoreColor } from './harness.mjs';

const RESULTS = ensureResults();
const DIST = join(UI, '..', 'crates', 'server', 'ui-dist');
let sonde, browser, context, feeding, loop;
let problems = [];
let stale = false;
// the fed orders anomalies: times (ms) and the real events
const ORDERS = [];
// the real events, by rule
let REAL = {};
const score = (e) => Number(e.attributes['anomaly.score']);
const rowScore = (row) => Number(/^\s*([\d.]+)/.exec(row)?.[1]);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sonde-rules-'));
  const rules = join(dir, 'rules.yml');
  writeFileSync(
    rules,
    [
      'groups:',
      '  - name: ui-test',
      '    interval: 1s',
      '    rules:',
      '      - alert: AlwaysOn',
      '        expr: vector(1)',
      '        labels: {severity: page}',
      '        annotations: {summary: always firing}',
      '      - alert: Never',
      '        expr: vector(1) == 2',
      '      - alert: Broken',
      '        expr: (label_replace(vector(1), "a", "1", "", "") or label_replace(vector(2), "a", "2", "", "")) + on() vector(1)',
      '      - record: ui:one',
      '        expr: vector(1)',
      '',
    ].join('\n'),
  );
  // Built-in anomaly rules off: the page is checked against this file's rules and fed events.
  sonde = await new Sonde('serve', { args: ['--rule-files', rules, '--anomaly-detection', 'off'] }).start();
  sonde.rulesDir = dir;
  // the service graph: traces every 200 ms; anomaly events in the past
  REAL = await realAnomalies([
    { service: 'checkout', metric: 'checkout.latency', rule: 'CheckoutLatency', jumpTo: 80 },
    { service: 'checkout', metric: 'checkout.retries', rule: 'CheckoutRetries', jumpTo: 12 },
    { service: 'orders', metric: 'orders.queue.depth', rule: 'OrdersQueue', jumpTo: 75 },
    { service: 'orders', metric: 'orders.backlog', rule: 'OrdersBacklog', jumpTo: 14 },
    { service: 'checkout', metric: 'checkout.timeouts', rule: 'LiveOne', jumpTo: 90 },
    { service: 'checkout', metric: 'checkout.errors', rule: 'NotThisService', jumpTo: 90 },
    { service: 'orders', metric: 'orders.dropped', rule: 'LiveOrders', jumpTo: 90 },
  ]);
  const now = Date.now();
  await sonde.post('/v1/logs', eventBody(REAL.CheckoutRetries, now - 120_000));
  await sonde.post('/v1/logs', eventBody(REAL.CheckoutLatency, now - 60_000));
  ORDERS.push({ ms: now - 100_000, e: REAL.OrdersBacklog }, { ms: now - 80_000, e: REAL.OrdersQueue });
  for (const o of ORDERS) await sonde.post('/v1/logs', eventBody(o.e, o.ms));
  // the series those orders events are about: {job="orders"}, one point every 5 s over 5 minutes
  const pts = [];
  for (let t = now - 300_000; t <= now; t += 5000) pts.push([t, 10 + (t / 5000) % 7]);
  await sonde.post('/v1/metrics', gaugeBody('orders', 'orders.queue.depth', pts));
  feeding = true;
  let i = 0;
  loop = (async () => {
    while (feeding) {
      try {
        await sonde.post('/v1/traces', graphTraceBody(Date.now() - 100, { error: i++ % 8 === 0 }));
      } catch {}
      await sleep(200);
    }
  })();

  const html = await (await fetch(sonde.url + '/')).text();
  const diskHtml = readFileSync(join(DIST, 'index.html'), 'utf8');
  stale = html !== diskHtml;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
  });
  context = await browser.newContext({ viewport: { width: 1440, height: 900 }, colorScheme: 'dark' });
  if (stale) {
    // Serve the UI (documents and assets) from crates/server/ui-dist.
    await context.route(
      (url) => url.origin === sonde.url && !/^\/(api|metrics|health|ready)(\/|$)/.test(url.pathname),
      (route) => {
        const p = new URL(route.request().url()).pathname;
        const file = join(DIST, p.startsWith('/assets/') || p === '/favicon.svg' ? p : 'index.html');
        if (!existsSync(file)) return route.fulfill({ status: 404, body: 'not found' });
        const type = file.endsWith('.js') ? 'text/javascript' : file.endsWith('.css') ? 'text/css' : file.endsWith('.svg') ? 'image/svg+xml' : 'text/html';
        return route.fulfill({ status: 200, contentType: type, body: readFileSync(file) });
      },
    );
  }
});

after(async () => {
  feeding = false;
  await loop;
  await browser?.close();
  await sonde?.stop();
  if (!process.env.SONDE_UI_KEEP) {
    sonde?.cleanup();
    if (sonde?.rulesDir) rmSync(sonde.rulesDir, { recursive: true, force: true });
  }
});

async function open(path) {
  const page = await context.newPage();
  problems = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  await page.goto(sonde.url + path);
  return page;
}

const shot = (page, name) => page.screenshot({ path: join(RESULTS, `${name}.png`), fullPage: true });
const noProblems = () => assert.deepEqual(problems, [], 'the page logged errors');

test('the server answers the new pages\' deep links with the app', async (t) => {
  if (stale) return t.skip('the sonde binary embeds an older UI bundle than ui-dist: rebuild it');
  for (const p of ['/alerts', '/anomalies', '/service-map']) assert.equal((await fetch(sonde.url + p)).status, 200, p);
});

test('alerts: the firing alert with its summary first, rules with state and health, the history', async () => {
  const page = await open('/alerts?refresh=1s');
  await page.waitForSelector('[data-testid=alert]');
  const alert = await page.$eval('[data-testid=alert]', (e) => e.textContent);
  assert.match(alert, /firing/);
  assert.match(alert, /AlwaysOn/);
  assert.match(alert, /severity="page"/);
  assert.equal(await page.$eval('[data-testid=alert-summary]', (e) => e.textContent.trim()), 'always firing');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=rule-row]').length === 4);
  const rules = await page.$$eval('[data-testid=rule-row]', (rs) => rs.map((r) => r.textContent));
  assert.ok(rules.some((r) => /AlwaysOn.*alerting.*firing.*ok/.test(r)), rules.join('\n'));
  assert.ok(rules.some((r) => /Never.*alerting.*inactive/.test(r)), rules.join('\n'));
  assert.ok(rules.some((r) => /ui:one.*recording/.test(r)), rules.join('\n'));
  // the broken rule's error is shown
  await page.waitForSelector('[data-testid=rule-error]');
  assert.ok((await page.$eval('[data-testid=rule-error]', (e) => e.textContent)).length > 0);
  await page.waitForSelector('[data-testid=history-row]');
  assert.match(await page.$eval('[data-testid=history-row]', (e) => e.textContent), /AlwaysOn.*firing/);
  await shot(page, 'alerts');
  noProblems();
  // the g shortcut
  await page.keyboard.press('g');
  await page.keyboard.press('n');
  await page.waitForURL(/\/anomalies/);
  await page.close();
});

test('anomalies: the fed events in the scatter and the list, newest first; a live one arrives through the tail', async () => {
  const page = await open('/anomalies?range=15m');
  await page.waitForSelector('[data-testid=anomaly-chart] canvas');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=anomaly-row]').length === 4);
  assert.equal(await page.$$eval('[data-testid=anomaly-filter]', (f) => f.length), 0);
  const rows = await page.$$eval('[data-testid=anomaly-row]', (rs) => rs.map((r) => r.textContent));
  // newest first: checkout's latency, orders' queue, orders' backlog, checkout's retries
  const expected = [REAL.CheckoutLatency, REAL.OrdersQueue, REAL.OrdersBacklog, REAL.CheckoutRetries];
  expected.forEach((e, i) => {
    assert.ok(rows[i].startsWith(fmtNum(score(e), 3)), `${rows[i]} should start with the score of ${e.attributes['alert.rule']}`);
    assert.ok(rows[i].includes(e.attributes['alert.rule']), rows[i]);
    assert.ok(rows[i].includes(e.service), rows[i]);
  });
  // the detector's own explanation
  assert.ok(rows[0].includes(REAL.CheckoutLatency.body), rows[0]);
  // the score bars' colours: >= 0.6 bad, >= 0.4 warn, else accent
  const bars = await page.$$eval('[data-testid=anomaly-row] .score-bar', (bs) => bs.map((b) => b.style.background));
  assert.deepEqual(bars, expected.map((e) => scoreColor(score(e))));
  await page.waitForFunction(() => /streaming/.test(document.querySelector('[data-testid=anomaly-tail]')?.textContent));
  await sonde.post('/v1/logs', eventBody(REAL.LiveOne, Date.now()));
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=anomaly-row]').length === 5, null, { timeout: 10_000 });
  assert.match(await page.$eval('[data-testid=anomaly-row]', (e) => e.textContent), /LiveOne/);
  await page.locator('[data-testid=anomaly-row] button').first().click();
  await page.waitForSelector('.anomaly.open .kv');
  await shot(page, 'anomalies');
  noProblems();
  await page.close();
});

test('anomalies: an empty range says so', async () => {
  const page = await open(`/anomalies?range=${Math.floor(Date.now() / 1000) - 86400 * 3}-${Math.floor(Date.now() / 1000) - 86400 * 2}`);
  await page.waitForSelector('[data-testid=empty]');
  assert.match(await page.$eval('[data-testid=empty]', (e) => e.textContent), /No anomalies/);
  noProblems();
  await page.close();
});

test('service map: services in layers with edge rate, errors and p95; a click opens the service\'s traces', async () => {
  const page = await open('/service-map?range=5m&refresh=1s');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=map-edge]').length >= 2, null, { timeout: 30_000 });
  const nodes = await page.$$eval('[data-testid=map-node]', (ns) => ns.map((n) => [n.dataset.id, n.getAttribute('transform')]));
  const x = Object.fromEntries(nodes.map(([id, t]) => [id, Number(/translate\(([\d.]+)/.exec(t)[1])]));
  assert.ok(x.web < x.orders && x.orders < x.stock, JSON.stringify(x));
  const edge = await page.$eval('[data-testid=map-edge][data-source=web][data-target=orders]', (e) => e.textContent);
  assert.match(edge, /\/s · [\d.]+% err\s*p95 [\d.]+ms/);
  await shot(page, 'service-map');
  await page.locator('[data-testid=map-node][data-id=orders]').click();
  await page.waitForURL(/\/traces\?.*service=orders/);
  noProblems();
  await page.close();
});

test('service map: an empty range says so', async () => {
  const page = await open(`/service-map?range=${Math.floor(Date.now() / 1000) - 86400 * 3}-${Math.floor(Date.now() / 1000) - 86400 * 2}`);
  await page.waitForSelector('[data-testid=empty]');
  noProblems();
  await page.close();
});

test('service map: a service with anomaly events is marked with their count and highest score; the badge opens its anomalies', async () => {
  const page = await open('/service-map?range=15m&refresh=1s');
  await page.waitForSelector('[data-testid=map-node][data-id=orders][data-anomalies]', { timeout: 30_000 });
  const node = await page.$eval('[data-testid=map-node][data-id=orders]', (n) => ({
    count: n.dataset.anomalies,
    max: n.dataset.maxScore,
    ring: n.querySelector('.anomaly-ring')?.getAttribute('stroke'),
    title: n.querySelector(':scope > title').textContent,
  }));
  const max = Math.max(...ORDERS.map((o) => score(o.e)));
  assert.equal(node.count, '2');
  assert.equal(Number(node.max), max);
  assert.equal(node.ring, scoreColor(max));
  // the latest explanation on hover: the detector's own
  assert.ok(node.title.includes(`2 anomalies, highest score ${fmtNum(max, 3)}`), node.title);
  assert.ok(node.title.includes(REAL.OrdersQueue.body), node.title);
  // services without anomaly events are not marked (checkout's are not on the map)
  const marked = await page.$$eval('[data-testid=map-node][data-anomalies]', (ns) => ns.map((n) => n.dataset.id));
  assert.deepEqual(marked, ['orders']);
  const badge = page.locator('[data-testid=map-node][data-id=orders] [data-testid=map-anomaly-badge]');
  assert.equal(await badge.getAttribute('data-count'), '2');
  assert.ok((await badge.textContent()).includes(`2 · ${fmtNum(max, 2)}`), await badge.textContent());
  const link = new URL(await badge.getAttribute('href'), sonde.url);
  assert.equal(link.pathname, '/anomalies');
  assert.equal(link.searchParams.get('service'), 'orders');
  assert.equal(link.searchParams.get('range'), '15m');
  await shot(page, 'service-map-anomalies');
  await badge.click();
  await page.waitForURL((u) => u.pathname === '/anomalies' && u.searchParams.get('service') === 'orders');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=anomaly-row]').length === 2);
  noProblems();
  await page.close();
});

test('explore: the anomaly events of a plotted series are markers at their times, coloured by score, explained on hover', async () => {
  // the real events are about {job="orders", otel_scope_name="ui-test"} (the
  // gauges' labels but their name), as is each series of this sum
  const page = await open('/explore?range=15m&refresh=1s&q=' + encodeURIComponent('sum by (job, otel_scope_name) (orders_queue_depth)'));
  await page.waitForSelector('[data-testid=explore-chart] canvas');
  await page.waitForFunction(() => document.querySelector('[data-testid=explore-chart] [data-testid=chart-markers]')?.dataset.count === '2', null, { timeout: 15_000 });
  const marks = await page.$$eval('[data-testid=explore-chart] [data-testid=chart-marker]', (ms) =>
    ms.map((m) => ({ t: Number(m.dataset.t), color: m.style.color, title: m.title, left: parseFloat(m.style.left), width: m.parentElement.parentElement.clientWidth })),
  );
  marks.sort((a, b) => a.t - b.t);
  assert.deepEqual(marks.map((m) => m.t), ORDERS.map((o) => o.ms / 1000));
  assert.deepEqual(marks.map((m) => m.color), ORDERS.map((o) => scoreColor(score(o.e))));
  assert.ok(marks[1].title.includes(`(OrdersQueue) · score ${fmtNum(score(REAL.OrdersQueue), 3)}\n${REAL.OrdersQueue.body}`), marks[1].title);
  // in time order across the plot
  assert.ok(0 < marks[0].left && marks[0].left < marks[1].left && marks[1].left < marks[1].width, JSON.stringify(marks));
  await shot(page, 'explore-anomaly-markers');
  // the events are about {job="orders", ...}, not the one series {} of a plain sum
  await page.goto(sonde.url + '/explore?range=15m&refresh=1s&q=' + encodeURIComponent('sum(orders_queue_depth)'));
  await page.waitForSelector('[data-testid=explore-chart] [data-testid=chart-markers]');
  await sleep(1500);
  assert.equal(await page.$eval('[data-testid=explore-chart] [data-testid=chart-markers]', (l) => l.dataset.count), '0');
  noProblems();
  await page.close();
});

test('anomalies: filtered by the service in the URL, live ones of other services left out; the filter clears', async () => {
  const page = await open('/anomalies?range=15m&service=orders');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=anomaly-row]').length === 2);
  assert.equal(await page.$eval('[data-testid=anomaly-filter]', (f) => f.dataset.service), 'orders');
  assert.match(await page.$eval('[data-testid=anomaly-filter]', (f) => f.textContent), /service\s*orders/);
  const rows = await page.$$eval('[data-testid=anomaly-row]', (rs) => rs.map((r) => r.textContent));
  assert.ok(rows.every((r) => /orders/.test(r) && !/checkout/.test(r)), rows.join('\n'));
  assert.ok(rows[0].includes('OrdersQueue') && rows[1].includes('OrdersBacklog'), rows.join('\n'));
  await page.waitForFunction(() => /streaming/.test(document.querySelector('[data-testid=anomaly-tail]')?.textContent));
  // checkout's first: were it let through, it would show before orders'
  await sonde.post('/v1/logs', eventBody(REAL.NotThisService, Date.now()));
  await sonde.post('/v1/logs', eventBody(REAL.LiveOrders, Date.now()));
  await page.waitForFunction(() => /LiveOrders/.test(document.querySelector('[data-testid=anomalies]')?.textContent), null, { timeout: 10_000 });
  await sleep(500);
  const live = await page.$$eval('[data-testid=anomaly-row]', (rs) => rs.map((r) => r.textContent));
  assert.equal(live.length, 3, live.join('\n'));
  assert.ok(!live.some((r) => /NotThisService/.test(r)), live.join('\n'));
  assert.match(await page.$eval('[data-testid=anomaly-tail]', (e) => e.textContent), /^3 anomalies/);
  await shot(page, 'anomalies-filtered');
  await page.click('[data-testid=anomaly-filter-clear]');
  await page.waitForURL((u) => u.pathname === '/anomalies' && !u.searchParams.has('service'));
  // every service's: the 4 fed, the earlier test's live one and the 2 just sent
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=anomaly-row]').length === 7, null, { timeout: 10_000 });
  assert.equal(await page.$$eval('[data-testid=anomaly-filter]', (f) => f.length), 0);
  noProblems();
  await page.close();
});
