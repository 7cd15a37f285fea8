// The web UI's figures for BENCHMARKS.md, in headless Chromium against a
// real `sonde serve` fed with the test data:
//   first load (navigation to a rendered overview with data) on localhost,
//   bundle size gzipped, rendering 100 series x 3,600 points with the
//   app's chart, and the frame rate while pages update live.
// `npm run bench` (after `npm run build` and `cargo build -p sonde-server`).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, Sonde, feed, UI } from './harness.mjs';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sonde = await new Sonde().start();
const f = await feed(sonde, { seconds: 900 });
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
});
const out = {};
const only = process.env.BENCH_ONLY; // first-load, chart or frames
try {
  const manifest = JSON.parse(readFileSync(join(UI, '..', 'crates', 'server', 'ui-dist', 'manifest.json'), 'utf8'));
  out.bundle = {
    files: manifest.files.length,
    rawKiB: +(manifest.totalBytes / 1024).toFixed(1),
    gzipKiB: +(manifest.totalGzipBytes / 1024).toFixed(1),
    jsGzipKiB: +(manifest.files.filter((x) => x.path.endsWith('.js')).reduce((s, x) => s + (x.gzipBytes ?? x.bytes), 0) / 1024).toFixed(1),
  };

  if (!only || only === 'first-load') {
  // First load: a fresh context each time (empty cache), to the overview
  // with its services and hosts rendered from live data.
  const loads = [];
  for (let i = 0; i < 7; i++) {
    const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await ctx.newPage();
    const t0 = Date.now();
    await page.goto(sonde.url + '/overview');
    await page.waitForSelector('[data-testid=service-row]');
    await page.waitForSelector('[data-testid=host-row]');
    const data = Date.now() - t0;
    const nav = await page.evaluate(() => {
      const n = performance.getEntriesByType('navigation')[0];
      const fcp = performance.getEntriesByName('first-contentful-paint')[0];
      return { dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, fcp: fcp?.startTime ?? null };
    });
    loads.push({ data, ...nav });
    await ctx.close();
  }
  out.firstLoad = {
    runs: loads.length,
    domContentLoadedMs: +median(loads.map((l) => l.dcl)).toFixed(1),
    firstContentfulPaintMs: +median(loads.map((l) => l.fcp)).toFixed(1),
    loadEventMs: +median(loads.map((l) => l.load)).toFixed(1),
    overviewWithDataMs: median(loads.map((l) => l.data)),
  };
  }

  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await ctx.newPage();
  await page.goto(sonde.url + '/overview');
  await page.waitForSelector('[data-testid=service-row]');
  if (!only || only === 'chart') {
  const renders = [];
  for (let i = 0; i < 7; i++) renders.push(await page.evaluate(() => window.__sonde.renderChart(100, 3600)));
  out.chart100x3600 = {
    runs: renders.length,
    renderMs: +median(renders.map((r) => r.renderMs)).toFixed(1),
    toNextFrameMs: +median(renders.map((r) => r.firstFrameMs)).toFixed(1),
  };
  }

  // Point to screen: a gauge value sent over OTLP/HTTP until the explorer's
  // legend (fed by the push stream) shows it.
  if (!only || only === 'latency') {
    const gauge = (v) => ({
      resourceMetrics: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'bench' } }] },
        scopeMetrics: [{ metrics: [{ name: 'ui_latency_probe', gauge: { dataPoints: [{ timeUnixNano: String(BigInt(Date.now()) * 1000000n), asDouble: v }] } }] }] }],
    });
    await sonde.post('/v1/metrics', gauge(1));
    await page.goto(`${sonde.url}/explore?range=5m&refresh=1s&q=ui_latency_probe`);
    await page.waitForSelector('[data-testid=legend] li');
    const lat = [];
    for (let i = 0; i < 7; i++) {
      await page.waitForTimeout(300 + 137 * i);
      const v = 1000 + i;
      const t0 = Date.now();
      await sonde.post('/v1/metrics', gauge(v));
      await page.waitForFunction((v) => document.querySelector('[data-testid=legend] b')?.textContent === String(v.toFixed(0)), v, { timeout: 10_000 });
      lat.push(Date.now() - t0);
    }
    out.pointToScreenMs = { runs: lat.length, median: median(lat), max: Math.max(...lat) };
  }

  // Frame rate while data streams in: each page for 10 s.
  out.liveFrames = {};
  const pages = {
    overview: ['/overview?range=15m&refresh=1s', '[data-testid=host-row]'],
    explore16series: [`/explore?range=15m&refresh=1s&q=${encodeURIComponent('rate(system_cpu_time_seconds_total[30s])')}`, '[data-testid=explore-chart] canvas'],
    hosts: ['/hosts?range=15m&refresh=1s', '[data-testid=host-chart] canvas'],
    logsTail: ['/logs?range=15m', '[data-testid=log-row]'],
  };
  for (const [name, [path, sel]] of Object.entries(only && only !== 'frames' ? {} : pages)) {
    await page.goto(sonde.url + path);
    await page.waitForSelector(sel);
    await page.waitForTimeout(1500);
    const r = await page.evaluate(() => window.__sonde.frames(10_000));
    out.liveFrames[name] = { fps: +r.fps.toFixed(1), frames: r.frames, longFrames: r.longFrames, worstFrameMs: +r.worstMs.toFixed(1) };
  }
  await ctx.close();
} finally {
  await browser.close();
  await f.stop();
  await sonde.stop();
  sonde.cleanup();
}
console.log(JSON.stringify(out, null, 2));
