// Runs a real `sonde serve` on free loopback ports with a fresh data
// directory, feeds it OTLP/JSON metrics, traces, logs and events (backfill
// plus a live feed), and opens headless Chromium on it.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, homedir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

export const UI = join(dirname(fileURLToPath(import.meta.url)), '..');
export const RESULTS = join(UI, 'test-results');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export function sondeBin() {
  return process.env.SONDE_BIN || join(process.env.CARGO_TARGET_DIR || join(homedir(), '.cache', 'sonde-target'), 'debug', 'sonde');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Sonde {
  /** `command`: serve, or demo (the server plus its simulated shop and agent). */
  constructor(command = 'serve', { args = [] } = {}) {
    this.command = command;
    /** extra flags for the command, e.g. ['--rule-files', path] */
    this.args = args;
  }
  async start() {
    const bin = sondeBin();
    if (!existsSync(bin)) throw new Error(`sonde binary not found at ${bin}: build it with \`cargo build -p sonde-cli\` or set SONDE_BIN`);
    this.tmp = mkdtempSync(join(tmpdir(), 'sonde-ui-'));
    [this.apiPort, this.grpcPort, this.httpPort] = [await freePort(), await freePort(), await freePort()];
    this.url = `http://127.0.0.1:${this.apiPort}`;
    this.otlp = `http://127.0.0.1:${this.httpPort}`;
    this.logPath = join(this.tmp, 'sonde.log');
    const log = openSync(this.logPath, 'a');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SONDE_')));
    this.proc = spawn(
      bin,
      [this.command, '--data-dir', join(this.tmp, 'data'), '--api-addr', `127.0.0.1:${this.apiPort}`, '--otlp-grpc-addr', `127.0.0.1:${this.grpcPort}`, '--otlp-http-addr', `127.0.0.1:${this.httpPort}`, '--log-level', 'warn', ...this.args],
      { stdio: ['ignore', log, log], env: { ...env, NO_COLOR: '1' } },
    );
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (this.proc.exitCode !== null) throw new Error(`sonde exited with ${this.proc.exitCode}; log in ${this.logPath}`);
      try {
        if ((await fetch(this.url + '/ready')).ok) return this;
      } catch {}
      if (Date.now() > deadline) throw new Error('sonde was not ready within 30s');
      await sleep(50);
    }
  }
  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      this.proc.kill('SIGTERM');
      await new Promise((r) => {
        const t = setTimeout(() => (this.proc.kill('SIGKILL'), r()), 10_000);
        this.proc.once('exit', () => (clearTimeout(t), r()));
      });
    }
  }
  cleanup() {
    if (this.tmp) rmSync(this.tmp, { recursive: true, force: true });
  }
  async post(path, body) {
    const r = await fetch(this.otlp + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const text = await r.text();
    if (r.status !== 200) throw new Error(`POST ${path}: ${r.status} ${text}`);
    const j = text ? JSON.parse(text) : {};
    if (j.partialSuccess && (j.partialSuccess.rejectedDataPoints || j.partialSuccess.rejectedSpans || j.partialSuccess.rejectedLogRecords)) {
      throw new Error(`POST ${path}: partial success ${text}`);
    }
  }
  async api(path) {
    const r = await fetch(this.url + path);
    const j = await r.json();
    if (j.status !== 'success') throw new Error(`${path}: ${JSON.stringify(j)}`);
    return j.data;
  }
}

// --- OTLP/JSON builders ------------------------------------------------------

const kv = (o) =>
  Object.entries(o).map(([key, v]) => ({
    key,
    value: typeof v === 'number' ? (Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v }) : typeof v === 'boolean' ? { boolValue: v } : { stringValue: String(v) },
  }));
const ns = (ms) => (BigInt(Math.round(ms)) * 1000000n).toString();
export const hex = (n) => randomBytes(n).toString('hex');

export const SERVICES = ['frontend', 'checkout', 'payments'];
export const HOSTS = ['web-1', 'db-1'];
const BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/**
 * Cumulative metrics of three services (OTel HTTP server histograms) and
 * two hosts (the agent's system metrics), one point per second.
 */
export class MetricFeed {
  constructor(startMs) {
    this.start = startMs;
    this.hist = new Map(); // svc|code -> {count, sum, buckets}
    this.cpu = new Map(); // host|cpu|state -> seconds
    this.net = new Map();
    this.disk = new Map();
  }
  step(svc, code, tSec) {
    const k = `${svc}|${code}`;
    let h = this.hist.get(k);
    if (!h) this.hist.set(k, (h = { count: 0, sum: 0, buckets: new Array(BOUNDS.length + 1).fill(0) }));
    const base = { frontend: 40, checkout: 18, payments: 9 }[svc];
    const n = code === 200 ? Math.round(base * (1 + 0.3 * Math.sin(tSec / 40))) : svc === 'payments' ? 1 + (tSec % 3 === 0 ? 1 : 0) : tSec % 5 === 0 ? 1 : 0;
    for (let i = 0; i < n; i++) {
      const d = (svc === 'payments' ? 0.08 : 0.02) * Math.exp(((i * 7919 + tSec * 31) % 100) / 45);
      h.count++;
      h.sum += d;
      let b = BOUNDS.findIndex((x) => d <= x);
      if (b < 0) b = BOUNDS.length;
      h.buckets[b]++;
    }
    return h;
  }
  /** OTLP requests for the seconds [fromSec, toSec] (several points per series). */
  bodies(fromSec, toSec) {
    const out = [];
    for (const svc of SERVICES) {
      const pts = [];
      for (let t = fromSec; t <= toSec; t++) {
        for (const code of [200, 500]) {
          const h = this.step(svc, code, t);
          pts.push({
            attributes: kv({ 'http.response.status_code': code, 'http.route': '/api', 'http.request.method': 'GET' }),
            startTimeUnixNano: ns(this.start),
            timeUnixNano: ns(t * 1000),
            count: String(h.count),
            sum: h.sum,
            bucketCounts: h.buckets.map(String),
            explicitBounds: BOUNDS,
          });
        }
      }
      out.push({
        resourceMetrics: [
          {
            resource: { attributes: kv({ 'service.name': svc, 'service.instance.id': `${svc}-1`, 'host.name': svc === 'payments' ? 'db-1' : 'web-1' }) },
            scopeMetrics: [{ scope: { name: 'ui-test' }, metrics: [{ name: 'http.server.request.duration', unit: 's', histogram: { aggregationTemporality: 2, dataPoints: pts } }] }],
          },
        ],
      });
    }
    for (const [hi, host] of HOSTS.entries()) {
      const cpu = [];
      const mem = [];
      const net = [];
      const disk = [];
      for (let t = fromSec; t <= toSec; t++) {
        const busy = 0.25 + 0.2 * Math.sin(t / 30 + hi) + 0.05 * Math.sin(t / 3);
        for (let c = 0; c < 2; c++) {
          const shares = { user: busy * 0.6, system: busy * 0.3, wait: busy * 0.1, idle: 1 - busy };
          for (const [state, s] of Object.entries(shares)) {
            const k = `${host}|${c}|${state}`;
            const v = (this.cpu.get(k) ?? 1000) + s;
            this.cpu.set(k, v);
            cpu.push({ attributes: kv({ cpu: String(c), state }), startTimeUnixNano: ns(this.start), timeUnixNano: ns(t * 1000), asDouble: v });
          }
        }
        const total = 8 * 2 ** 30;
        const used = total * (0.45 + 0.1 * Math.sin(t / 60 + hi));
        for (const [state, v] of Object.entries({ used, free: total - used - 2 ** 30 * 1.5, buffered: 2 ** 29, cached: 2 ** 30 })) {
          mem.push({ attributes: kv({ state }), timeUnixNano: ns(t * 1000), asDouble: v });
        }
        for (const dir of ['receive', 'transmit']) {
          const k = `${host}|${dir}`;
          const v = (this.net.get(k) ?? 1e6) + (dir === 'receive' ? 2e5 : 8e4) * (1 + 0.5 * Math.sin(t / 20 + hi));
          this.net.set(k, v);
          net.push({ attributes: kv({ device: 'eth0', direction: dir }), startTimeUnixNano: ns(this.start), timeUnixNano: ns(t * 1000), asDouble: v });
          const ddir = dir === 'receive' ? 'read' : 'write';
          const dk = `${host}|${ddir}`;
          const dv = (this.disk.get(dk) ?? 1e6) + (ddir === 'read' ? 1e5 : 3e5) * (1 + Math.sin(t / 15 + (ddir === 'read' ? 2 : 0)));
          this.disk.set(dk, dv);
          disk.push({ attributes: kv({ device: 'sda', direction: ddir }), startTimeUnixNano: ns(this.start), timeUnixNano: ns(t * 1000), asDouble: dv });
        }
      }
      const sum = (name, unit, pts, mono = true) => ({ name, unit, sum: { aggregationTemporality: 2, isMonotonic: mono, dataPoints: pts } });
      out.push({
        resourceMetrics: [
          {
            resource: { attributes: kv({ 'service.name': 'sonde-agent', 'service.instance.id': host, 'host.name': host }) },
            scopeMetrics: [
              {
                scope: { name: 'sonde.agent' },
                metrics: [sum('system.cpu.time', 's', cpu), sum('system.memory.usage', 'By', mem, false), sum('system.network.io', 'By', net), sum('system.disk.io', 'By', disk)],
              },
            ],
          },
        ],
      });
    }
    return out;
  }
}

/** A trace: frontend -> checkout -> (payments, db), `n` spans in all. */
export function traceBody(startMs, { n = 5, error = false, traceId = hex(16) } = {}) {
  const spans = [];
  const root = hex(8);
  const dur = 20 + (parseInt(traceId.slice(0, 4), 16) % 400);
  spans.push({ svc: 'frontend', s: { traceId, spanId: root, name: 'GET /checkout', kind: 2, startTimeUnixNano: ns(startMs), endTimeUnixNano: ns(startMs + dur), attributes: kv({ 'http.route': '/checkout', 'http.response.status_code': error ? 500 : 200, 'user.id': 'u' + (dur % 17) }), status: { code: error ? 2 : 1, message: error ? 'payment declined' : '' }, events: [] } });
  const co = hex(8);
  spans.push({ svc: 'checkout', s: { traceId, spanId: co, parentSpanId: root, name: 'checkout.place_order', kind: 2, startTimeUnixNano: ns(startMs + 2), endTimeUnixNano: ns(startMs + dur - 2), attributes: kv({ 'order.items': 3 }), status: { code: error ? 2 : 0 }, events: [{ timeUnixNano: ns(startMs + dur / 2), name: 'cart.validated', attributes: kv({ items: 3 }) }] } });
  for (let i = 2; i < n; i++) {
    const svc = i % 2 ? 'payments' : 'checkout';
    const a = startMs + 4 + ((i - 2) * (dur - 8)) / (n - 2);
    const b = a + (dur - 8) / (n - 2) - 1;
    const bad = error && i === n - 1;
    spans.push({ svc, s: { traceId, spanId: hex(8), parentSpanId: co, name: svc === 'payments' ? 'payments.charge' : `db.query ${i}`, kind: 3, startTimeUnixNano: ns(a), endTimeUnixNano: ns(b), attributes: kv({ 'db.system': 'postgresql', step: i }), status: { code: bad ? 2 : 0, message: bad ? 'card declined' : '' }, events: bad ? [{ timeUnixNano: ns(b - 1), name: 'exception', attributes: kv({ 'exception.message': 'card declined' }) }] : [] } });
  }
  const by = new Map();
  for (const { svc, s } of spans) by.set(svc, [...(by.get(svc) ?? []), s]);
  const logs = [
    { svc: 'checkout', l: { timeUnixNano: ns(startMs + 3), severityNumber: 9, severityText: 'INFO', body: { stringValue: `placing order ${traceId.slice(0, 6)}` }, traceId, spanId: co, attributes: kv({ 'order.id': traceId.slice(0, 6) }) } },
  ];
  if (error) logs.push({ svc: 'payments', l: { timeUnixNano: ns(startMs + dur - 3), severityNumber: 17, severityText: 'ERROR', body: { stringValue: 'charge failed: card declined' }, traceId, spanId: spans[spans.length - 1].s.spanId, attributes: kv({}) } });
  return {
    traceId,
    traces: { resourceSpans: [...by].map(([svc, ss]) => ({ resource: { attributes: kv({ 'service.name': svc, 'host.name': svc === 'payments' ? 'db-1' : 'web-1' }) }, scopeSpans: [{ scope: { name: 'ui-test' }, spans: ss }] })) },
    logs: logsBody(logs),
  };
}

/**
 * A call chain with CLIENT/SERVER pairs, for the service graph:
 * web (server) -> web (client) -> orders (server) -> orders (client, db.system postgresql)
 * and orders (client) -> stock (server).
 */
export function graphTraceBody(startMs, { error = false } = {}) {
  const traceId = hex(16);
  const by = { web: [], orders: [], stock: [] };
  const span = (svc, id, parent, name, kind, a, b, attrs = {}, bad = false) =>
    by[svc].push({ traceId, spanId: id, parentSpanId: parent, name, kind, startTimeUnixNano: ns(startMs + a), endTimeUnixNano: ns(startMs + b), attributes: kv(attrs), status: { code: bad ? 2 : 0 } });
  const [root, c1, s1, db, c2, s2] = [hex(8), hex(8), hex(8), hex(8), hex(8), hex(8)];
  span('web', root, '', 'GET /order', 2, 0, 60, {}, error);
  span('web', c1, root, 'POST orders', 3, 2, 58, {}, error);
  span('orders', s1, c1, 'POST /orders', 2, 4, 56, {}, error);
  span('orders', db, s1, 'INSERT orders', 3, 6, 20, { 'db.system': 'postgresql', 'db.name': 'shop' });
  span('orders', c2, s1, 'GET stock', 3, 22, 50, {}, error);
  span('stock', s2, c2, 'GET /stock', 2, 24, 48, {}, error);
  return { resourceSpans: Object.entries(by).map(([svc, ss]) => ({ resource: { attributes: kv({ 'service.name': svc, 'host.name': 'web-1' }) }, scopeSpans: [{ scope: { name: 'ui-test' }, spans: ss }] })) };
}

/** A gauge of one service: `points` as [ms, value]. */
export function gaugeBody(service, name, points) {
  return {
    resourceMetrics: [
      {
        resource: { attributes: kv({ 'service.name': service, 'host.name': 'web-1' }) },
        scopeMetrics: [{ scope: { name: 'ui-test' }, metrics: [{ name, gauge: { dataPoints: points.map(([ms, v]) => ({ timeUnixNano: ns(ms), asDouble: v, attributes: [] })) } }] }],
      },
    ],
  };
}

export function logsBody(items) {
  const by = new Map();
  for (const { svc, l } of items) by.set(svc, [...(by.get(svc) ?? []), l]);
  return { resourceLogs: [...by].map(([svc, ls]) => ({ resource: { attributes: kv({ 'service.name': svc, 'host.name': svc === 'payments' ? 'db-1' : 'web-1' }) }, scopeLogs: [{ scope: { name: 'ui-test' }, logRecords: ls }] })) };
}

export function logItem(ms, i, { event } = {}) {
  const svc = SERVICES[i % 3];
  const sev = [9, 9, 9, 5, 13, 17][i % 6];
  const attrs = { 'request.id': `r${i}` };
  if (event) attrs['event.name'] = event;
  return {
    svc,
    l: {
      timeUnixNano: ns(ms),
      severityNumber: sev,
      severityText: { 5: 'DEBUG', 9: 'INFO', 13: 'WARN', 17: 'ERROR' }[sev],
      body: { stringValue: event ? `${event} ${i}` : `${svc} handled request ${i} in ${(i * 37) % 250}ms` },
      attributes: kv(attrs),
    },
  };
}

/** Backfills the last `seconds` and keeps feeding until stop(). */
export async function feed(sonde, { seconds = 600 } = {}) {
  const now = Date.now();
  const nowSec = Math.floor(now / 1000);
  const m = new MetricFeed(now - seconds * 1000 - 5000);
  for (let from = nowSec - seconds; from <= nowSec; from += 120) {
    for (const b of m.bodies(from, Math.min(nowSec, from + 119))) await sonde.post('/v1/metrics', b);
  }
  const known = [];
  for (let i = 0; i < 40; i++) {
    const t = traceBody(now - (40 - i) * 7000, { n: i === 39 ? 7 : 3 + (i % 4), error: i % 9 === 4 });
    await sonde.post('/v1/traces', t.traces);
    await sonde.post('/v1/logs', t.logs);
    known.push(t);
  }
  const items = [];
  for (let i = 0; i < 60; i++) items.push(logItem(now - (60 - i) * 4000, i, { event: i % 10 === 0 ? (i % 20 ? 'deployment' : 'page_view') : undefined }));
  await sonde.post('/v1/logs', logsBody(items));

  let sec = nowSec;
  let i = 1000;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await sleep(250);
      const t = Date.now();
      try {
        await sonde.post('/v1/logs', logsBody([logItem(t, i++)]));
        if (Math.floor(t / 1000) > sec) {
          const to = Math.floor(t / 1000);
          for (const b of m.bodies(sec + 1, to)) await sonde.post('/v1/metrics', b);
          sec = to;
          if (sec % 2 === 0) {
            const tr = traceBody(t - 500, { n: 3 + (sec % 4), error: sec % 7 === 0 });
            await sonde.post('/v1/traces', tr.traces);
            await sonde.post('/v1/logs', tr.logs);
          }
        }
      } catch {
        // the server may be stopping (the offline test)
      }
    }
  })();
  return {
    known,
    sevenSpanTrace: known[39].traceId,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

export function ensureResults() {
  mkdirSync(RESULTS, { recursive: true });
  return RESULTS;
}

/** Whether this `sonde` binary has the `demo` command. */
export function hasDemo() {
  try {
    return /^\s+demo\s/m.test(execFileSync(sondeBin(), ['help'], { encoding: 'utf8' }));
  } catch {
    return false;
  }
}

/** `fmtNum` of ui/src/time.ts: how the pages print a score. */
export function fmtNum(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (!isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e9) return (v / 1e9).toFixed(2) + 'G';
  if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
  if (a >= 100) return v.toFixed(0);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(digits);
}

/** `scoreColor` of ui/src/anomaly.ts. */
export function scoreColor(s) {
  if (s === null || s === undefined) return 'var(--muted)';
  return s >= 0.6 ? 'var(--bad)' : s >= 0.4 ? 'var(--warn)' : 'var(--accent)';
}

/**
 * `anomaly.detected` events from the real detector, for the page tests: a
 * fixture `sonde serve` stores ten minutes of a steady gauge for each spec
 * ({service, metric (an OpenTelemetry name), rule, jumpTo, labels: the
 * data points' attributes, e.g. {instance: 'db-1'}}), loads one
 * anomaly rule per gauge only then (so each detector learns its gauge's
 * history from the store before its first evaluation), and the gauges jump;
 * the detector's first event of each rule is returned as /api/v1/events
 * gives it, keyed by rule.
 */
export async function realAnomalies(specs) {
  const { writeFileSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'sonde-detector-'));
  const fixture = await new Sonde('serve', { args: ['--rule-files', join(dir, '*.yml'), '--anomaly-detection', 'off'] }).start();
  try {
    const steady = (ms) => 10 + ((ms / 1000) % 7) * 0.1;
    const body = (s, points) => {
      const b = gaugeBody(s.service, s.metric, points);
      for (const p of b.resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints) p.attributes = kv(s.labels ?? {});
      return b;
    };
    const now = Date.now();
    for (const s of specs) {
      const history = [];
      for (let t = now - 600_000; t < now; t += 1000) history.push([t, steady(t)]);
      for (let i = 0; i < history.length; i += 200) await fixture.post('/v1/metrics', body(s, history.slice(i, i + 200)));
    }
    const rules = ['groups:', '  - name: detector', '    interval: 250ms', '    rules:'];
    for (const s of specs) {
      const matchers = Object.entries({ job: s.service, ...(s.labels ?? {}) }).map(([k, v]) => `${k}="${v}"`).join(', ');
      rules.push(`      - alert: ${s.rule}`, `        expr: '${s.metric.replaceAll('.', '_')}{${matchers}}'`, '        anomaly: {score_above: 0.25, step: 1s}');
    }
    writeFileSync(join(dir, 'rules.yml'), rules.join('\n') + '\n');
    const reload = await fetch(fixture.url + '/-/reload', { method: 'POST' });
    if (!reload.ok) throw new Error(`reload: ${await reload.text()}`);
    const started = Date.now();
    const found = {};
    while (Date.now() - started < 60_000 && Object.keys(found).length < specs.length) {
      const t = Date.now();
      for (const s of specs) {
        const v = t - started > 4000 ? s.jumpTo ?? 80 : steady(t);
        await fixture.post('/v1/metrics', body(s, [[t, v]]));
      }
      const events = await (await fetch(fixture.url + '/api/v1/events?name=anomaly.detected&limit=100')).json();
      for (const e of events.data.logs) {
        const rule = e.attributes['alert.rule'];
        if (BigInt(e.timeUnixNano) / 1_000_000n >= BigInt(started + 4000) && !(rule in found)) found[rule] = e;
      }
      await sleep(250);
    }
    const missing = specs.filter((s) => !(s.rule in found)).map((s) => s.rule);
    if (missing.length) throw new Error(`the detector found no anomaly for ${missing.join(', ')} within 60 s`);
    return found;
  } finally {
    await fixture.stop();
    fixture.cleanup?.();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** OTLP/JSON logs re-posting a real event as it was (resource, attributes, body), at `ms` when given. */
export function eventBody(e, ms) {
  const attributes = Object.entries(e.attributes).map(([key, v]) => ({
    key,
    value: typeof v === 'number' ? { doubleValue: v } : { stringValue: String(v) },
  }));
  const resource = { 'service.name': e.service, ...(e.host ? { 'host.name': e.host } : {}) };
  return {
    resourceLogs: [
      {
        resource: { attributes: kv(resource) },
        scopeLogs: [
          {
            scope: { name: e.scope?.name ?? 'sonde.alerting' },
            logRecords: [
              {
                timeUnixNano: ms === undefined ? e.timeUnixNano : ns(ms),
                severityNumber: e.severityNumber,
                severityText: e.severityText,
                eventName: e.eventName,
                body: { stringValue: e.body },
                attributes,
              },
            ],
          },
        ],
      },
    ],
  };
}
