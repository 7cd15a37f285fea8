// Emits one checkout trace, its logs and an event with the real OpenTelemetry
// Node.js SDK, for tests/python/test_node_sdk.py.
//
//   node tests/node/emit.mjs http://127.0.0.1:4318 http-proto
//   node tests/node/emit.mjs http://127.0.0.1:4317 grpc
//
// Exits 0 only when every export succeeded; then prints one JSON line:
// {"traceId", "linkedTraceId", "spanIds": {...}, "startNs", "exported": {...}}.
// Needs `npm ci --prefix tests/node`.

import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

const [base, transport = 'http-proto'] = process.argv.slice(2);
if (!base || !/^https?:\/\//.test(base)) {
  console.error('usage: node emit.mjs http://HOST:PORT [http-proto|grpc]');
  process.exit(2);
}

async function exporters() {
  const root = base.replace(/\/+$/, '');
  if (transport === 'http-proto') {
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-proto');
    const { OTLPLogExporter } = await import('@opentelemetry/exporter-logs-otlp-proto');
    return [
      new OTLPTraceExporter({ url: `${root}/v1/traces`, timeoutMillis: 10_000 }),
      new OTLPLogExporter({ url: `${root}/v1/logs`, timeoutMillis: 10_000 }),
    ];
  }
  if (transport === 'grpc') {
    // An http:// url means a plaintext channel.
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-grpc');
    const { OTLPLogExporter } = await import('@opentelemetry/exporter-logs-otlp-grpc');
    return [
      new OTLPTraceExporter({ url: root, timeoutMillis: 10_000 }),
      new OTLPLogExporter({ url: root, timeoutMillis: 10_000 }),
    ];
  }
  console.error(`unknown transport ${transport}; use http-proto or grpc`);
  process.exit(2);
}

// Wraps an exporter so that every export's outcome is kept: the batch
// processors only report failures to the diag logger.
function recording(exporter, what) {
  const results = [];
  let items = 0;
  const inner = exporter.export.bind(exporter);
  exporter.export = (batch, done) => {
    inner(batch, (result) => {
      results.push(result);
      if (result.code === 0) items += batch.length;
      else console.error(`${what} export failed: ${result.error?.stack ?? result.error}`);
      done(result);
    });
  };
  return {
    exporter,
    get items() { return items; },
    ok: () => results.length > 0 && results.every((r) => r.code === 0),
    results,
  };
}

const [spanExporter, logExporter] = await exporters();
const spans = recording(spanExporter, 'span');
const logRecords = recording(logExporter, 'log');

const resource = defaultResource().merge(
  resourceFromAttributes({ 'service.name': 'node-checkout', 'host.name': 'node-host' }),
);
// Long delays: everything is exported by the explicit forceFlush below.
const batch = { scheduledDelayMillis: 3_600_000, exportTimeoutMillis: 15_000 };
const tracerProvider = new NodeTracerProvider({
  resource,
  spanProcessors: [new BatchSpanProcessor(spans.exporter, batch)],
});
tracerProvider.register(); // global provider and the AsyncLocalStorage context manager
const loggerProvider = new LoggerProvider({
  resource,
  processors: [new BatchLogRecordProcessor({ exporter: logRecords.exporter, ...batch })],
});

const tracer = trace.getTracer('sonde.tests.node', '0.3.1');
const logger = loggerProvider.getLogger('sonde.tests.node.logs', '0.3.1');

// Fixed times (whole microseconds, in the recent past), as [seconds, nanos].
const MS = 1_000_000n;
const t0 = (BigInt(Date.now()) - 60_000n) * MS;
const at = (ms) => {
  const ns = t0 + BigInt(Math.round(ms * 1000)) * 1000n;
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
};

// The span the link points at, in a trace of its own.
const warm = tracer.startSpan('warm cache', { startTime: at(-5000) }, ROOT_CONTEXT);
warm.end(at(-4000));

const root = tracer.startSpan(
  'GET /checkout',
  {
    kind: SpanKind.SERVER,
    startTime: at(0),
    attributes: {
      'http.route': '/checkout',
      'app.str': 'hello',
      'app.int': 42,
      'app.float': 2.5,
      'app.bool': true,
      'app.strs': ['a', 'b'],
    },
  },
  ROOT_CONTEXT,
);
let child;
let grandchild;
context.with(trace.setSpan(ROOT_CONTEXT, root), () => {
  child = tracer.startSpan('price cart', {
    kind: SpanKind.INTERNAL,
    startTime: at(10),
    links: [{ context: warm.spanContext(), attributes: { 'link.reason': 'warmed-by' } }],
  });
  context.with(trace.setSpan(context.active(), child), () => {
    logger.emit({
      timestamp: at(20),
      severityNumber: SeverityNumber.INFO,
      severityText: 'INFO',
      body: 'pricing cart c-42',
    });
    logger.emit({
      timestamp: at(30),
      severityNumber: SeverityNumber.WARN,
      severityText: 'WARN',
      body: 'discount service slow',
      attributes: { 'cart.id': 'c-42', 'latency.ms': 250, 'retry': true },
    });
    grandchild = tracer.startSpan('SELECT orders', {
      kind: SpanKind.CLIENT,
      startTime: at(40),
      attributes: { 'db.system': 'postgresql', 'db.operation.name': 'SELECT', 'server.port': 5432 },
    });
    grandchild.recordException(new Error('db timeout'), at(190));
    grandchild.setStatus({ code: SpanStatusCode.ERROR, message: 'db timeout' });
    grandchild.end(at(200));
  });
  child.end(at(250));
  // An event: a log record with an `event.name` attribute.
  logger.emit({
    timestamp: at(290),
    severityNumber: SeverityNumber.INFO,
    severityText: 'INFO',
    body: 'checkout completed',
    attributes: { 'event.name': 'checkout.completed', 'user.id': 'u-17', 'session.id': 's-9', 'cart.total': 99.5 },
  });
});
root.end(at(300));

await tracerProvider.forceFlush();
await loggerProvider.forceFlush();
await tracerProvider.shutdown();
await loggerProvider.shutdown();

if (!spans.ok() || !logRecords.ok()) {
  console.error(
    `exports failed or never happened: spans ${JSON.stringify(spans.results)}, logs ${JSON.stringify(logRecords.results)}`,
  );
  process.exit(1);
}

const ids = (s) => s.spanContext().spanId;
console.log(JSON.stringify({
  traceId: root.spanContext().traceId,
  linkedTraceId: warm.spanContext().traceId,
  spanIds: { root: ids(root), child: ids(child), grandchild: ids(grandchild), linked: ids(warm) },
  startNs: t0.toString(),
  exported: { spans: spans.items, logs: logRecords.items },
}));
