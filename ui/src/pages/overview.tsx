// Overview: every service's request rate, error rate and p95 latency, every
// host's CPU, memory and network, and the latest events, all moving live;
// a service's or host's anomaly events mark its sparklines.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, Entity, LogRecord, metricNames, subscribe, TraceSummary } from '../api';
import { anomalyMarkers, ofService, onHost, useAnomalyEvents } from '../anomaly';
import { Marker, Sparkline, PALETTE } from '../chart';
import { Badge, bodyText, Empty, ErrorBox, Panel, Skeleton, serviceColor } from '../components';
import { href } from '../router';
import { lastValue, useRangeQuery, RangeData } from '../rangequery';
import { useRange, useTick } from '../state';
import { bounds, fmtBytes, fmtCount, fmtNum, fmtPct, fmtSeconds, fmtTime, niceStep, nsToMs, fmtDurationNs } from '../time';

/** The OTel HTTP server duration histograms, newest semantic conventions first. */
const HTTP_HISTOGRAMS: { base: string; scale: number; status: string }[] = [
  { base: 'http_server_request_duration_seconds', scale: 1, status: 'http_response_status_code' },
  { base: 'http_server_duration_seconds', scale: 1, status: 'http_status_code' },
  { base: 'http_server_duration_milliseconds', scale: 0.001, status: 'http_status_code' },
];

export function rateWindow(range: string, points: number): string {
  const b = bounds(range);
  const step = niceStep(b.end - b.start, points);
  return `${Math.max(30, step * 4)}s`;
}

/** Series of a range query by one label's value. */
export function byLabel(r: RangeData, label: string): Map<string, (number | null)[]> {
  const m = new Map<string, (number | null)[]>();
  r.series.forEach((s, i) => m.set(s.metric[label] ?? '', r.data[i + 1]));
  return m;
}

function useMetricNames(tick: number): string[] | null {
  const [names, setNames] = useState<string[] | null>(null);
  useEffect(() => {
    // Often at first: an SDK's first export may come a few seconds late.
    metricNames().then(setNames, () => setNames((n) => n ?? []));
  }, [Math.floor(tick / 10)]);
  return names;
}

export function Overview() {
  const tick = useTick();
  const names = useMetricNames(tick);
  const { events: anomalies } = useAnomalyEvents(tick);
  return (
    <div class="page overview">
      <Services tick={tick} names={names} anomalies={anomalies} />
      <HostsPanel tick={tick} names={names} anomalies={anomalies} />
      <RecentEvents />
    </div>
  );
}

/** Markers per key: the events `of` each one. */
export function useMarkersBy(keys: string[], events: LogRecord[], of: (r: LogRecord, key: string) => boolean): Map<string, Marker[]> {
  return useMemo(() => new Map(keys.map((k) => [k, anomalyMarkers(events.filter((r) => of(r, k)))])), [keys.join('\n'), events]);
}

function Services({ tick, names, anomalies }: { tick: number; names: string[] | null; anomalies: LogRecord[] }) {
  const { range } = useRange();
  const [services, setServices] = useState<Entity[] | null>(null);
  const [err, setErr] = useState<unknown>(null);
  useEffect(() => {
    if (services && tick % 5 !== 0) return;
    const b = bounds(range);
    api<Entity[]>('/api/v1/services', { lookback: `${Math.ceil(b.end - b.start)}s` }).then(
      (s) => {
        setServices(s);
        setErr(null);
      },
      setErr,
    );
  }, [range, Math.floor(tick / 5)]);

  const hist = names ? HTTP_HISTOGRAMS.find((h) => names.includes(h.base + '_count')) : undefined;
  const points = 90;
  const w = rateWindow(range, points);
  const q = (s: string) => (hist ? s : '');
  const rate = useRangeQuery(q(`sum by (job) (rate(${hist?.base}_count[${w}]))`), range, tick, { points });
  const errors = useRangeQuery(
    q(`sum by (job) (rate(${hist?.base}_count{${hist?.status}=~"5.."}[${w}])) / sum by (job) (rate(${hist?.base}_count[${w}]))`),
    range,
    tick,
    { points },
  );
  const p95 = useRangeQuery(
    q(`histogram_quantile(0.95, sum by (job, le) (rate(${hist?.base}_bucket[${w}]))) * ${hist?.scale ?? 1}`),
    range,
    tick,
    { points },
  );
  const fromSpans = useSpanRed(!hist && names !== null, tick);

  // `job` is `service.namespace/service.name` when a namespace is set;
  // the span catalog names the service alone: one row for both.
  const known = new Set(services?.map((s) => s.name) ?? []);
  const svcOf = (job: string) => (known.has(job) || !job.includes('/') ? job : known.has(job.split('/').pop()!) ? job.split('/').pop()! : job);
  const rekey = (m: Map<string, (number | null)[]>) => new Map([...m].map(([k, v]) => [svcOf(k), v]));
  const rateBy = rekey(byLabel(rate, 'job'));
  const errBy = rekey(byLabel(errors, 'job'));
  const p95By = rekey(byLabel(p95, 'job'));
  const rows = useMemo(() => {
    const all = new Set<string>(known);
    rateBy.forEach((_, k) => k && all.add(k));
    return [...all].sort();
  }, [services, rate.series]);
  const ent = new Map(services?.map((s) => [s.name, s]) ?? []);
  const marks = useMarkersBy(rows, anomalies, ofService);
  const loading = services === null || names === null || (hist && rate.loading);

  return (
    <Panel
      title="Services"
      actions={
        <span class="muted small">
          {hist ? (
            <>
              from <code>{hist.base}</code>, {w} windows
            </>
          ) : (
            'from root spans of the last 5 minutes (no HTTP server metrics yet)'
          )}
        </span>
      }
    >
      <ErrorBox error={err || rate.error || fromSpans.error} what="Loading services" />
      {loading ? (
        <Skeleton lines={4} />
      ) : rows.length === 0 ? (
        <Empty hint="Point an OpenTelemetry SDK at the OTLP port (4317 gRPC, 4318 HTTP) or run `sonde demo`.">No services have sent data yet.</Empty>
      ) : (
        <table class="grid services" data-testid="services" data-mode={hist ? rate.mode : ''} data-updated={rate.updatedAt}>
          <colgroup>
            <col style={{ width: '22%' }} />
            <col style={{ width: '17%' }} />
            <col style={{ width: '17%' }} />
            <col style={{ width: '17%' }} />
            <col style={{ width: '27%' }} />
          </colgroup>
          <thead>
            <tr>
              <th>service</th>
              <th class="num">requests/s</th>
              <th class="num">errors</th>
              <th class="num">p95 latency</th>
              <th>signals</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((name) => {
              const e = ent.get(name);
              const sp = fromSpans.by.get(name);
              const r = rateBy.get(name);
              const er = errBy.get(name);
              const p = p95By.get(name);
              const m = marks.get(name);
              return (
                <tr key={name} data-testid="service-row" data-service={name} data-anomalies={m?.length || undefined}>
                  <td>
                    <a href={href('/traces', { service: name })} class="svc">
                      <i style={{ background: serviceColor(name) }} />
                      {name}
                    </a>
                  </td>
                  <td class="num">
                    <div class="cell-spark">
                      <span>{hist ? fmtNum(lastValue(r)) : sp ? fmtNum(sp.rate) : '–'}</span>
                      {hist && <Sparkline values={r ?? []} stroke={PALETTE[0]} xs={rate.data[0]} markers={m} />}
                    </div>
                  </td>
                  <td class="num">
                    <div class="cell-spark">
                      <span class={(hist ? lastValue(er) ?? 0 : sp?.errRatio ?? 0) > 0.01 ? 'bad' : ''}>{hist ? (r ? fmtPct(lastValue(er) ?? 0) : '–') : sp ? fmtPct(sp.errRatio) : '–'}</span>
                      {hist && <Sparkline values={er ?? []} stroke={PALETTE[7]} max={0.05} xs={errors.data[0]} markers={m} />}
                    </div>
                  </td>
                  <td class="num">
                    <div class="cell-spark">
                      <span>{hist ? fmtSeconds(lastValue(p) ?? NaN) : sp ? fmtDurationNs(sp.p95) : '–'}</span>
                      {hist && <Sparkline values={p ?? []} stroke={PALETTE[4]} xs={p95.data[0]} markers={m} />}
                    </div>
                  </td>
                  <td class="small">
                    {e ? (
                      <>
                        <span title="metric series">{e.signals.metrics.series} series</span> · <span title="spans">{fmtCount(e.signals.traces.spans)} spans</span> ·{' '}
                        <a href={href('/logs', { service: name })}>{fmtCount(e.signals.logs.records)} logs</a>
                      </>
                    ) : (
                      '–'
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </Panel>
  );
}

/** RED from trace roots, when no HTTP metrics exist: the last 5 minutes. */
function useSpanRed(enabled: boolean, tick: number) {
  const [st, setSt] = useState<{ by: Map<string, { rate: number; errRatio: number; p95: number }>; error: unknown }>({ by: new Map(), error: null });
  useEffect(() => {
    if (!enabled || (tick % 5 !== 0 && st.by.size)) return;
    const now = Date.now() / 1000;
    api<TraceSummary[]>('/api/v1/traces', { start: (now - 300).toFixed(0), end: now.toFixed(0), limit: 1000 }).then(
      (ts) => {
        const g = new Map<string, TraceSummary[]>();
        for (const t of ts) {
          const a = g.get(t.rootService) ?? [];
          a.push(t);
          g.set(t.rootService, a);
        }
        const by = new Map<string, { rate: number; errRatio: number; p95: number }>();
        for (const [svc, list] of g) {
          const d = list.map((t) => t.durationNs).sort((a, b) => a - b);
          const oldest = Math.min(...list.map((t) => nsToMs(t.startTimeUnixNano))) / 1000;
          // The window actually covered: the search's limit, or a service that just started.
          const span = Math.max(1, Math.min(300, now - oldest));
          by.set(svc, {
            rate: list.length / span,
            errRatio: list.filter((t) => t.errorCount > 0).length / list.length,
            p95: d[Math.min(d.length - 1, Math.floor(d.length * 0.95))],
          });
        }
        setSt({ by, error: null });
      },
      (error) => setSt((s) => ({ ...s, error })),
    );
  }, [enabled, Math.floor(tick / 5)]);
  return st;
}

export function HostsPanel({ tick, names, title = 'Hosts', anomalies }: { tick: number; names: string[] | null; title?: string; anomalies: LogRecord[] }) {
  const { range } = useRange();
  const points = 90;
  const w = rateWindow(range, points);
  const has = names?.includes('system_cpu_time_seconds_total') || names?.includes('system_memory_usage_bytes');
  const q = (s: string) => (has ? s : '');
  const cpu = useRangeQuery(q(`1 - avg by (instance) (rate(system_cpu_time_seconds_total{state="idle"}[${w}]))`), range, tick, { points });
  const mem = useRangeQuery(q(`sum by (instance) (system_memory_usage_bytes{state="used"}) / sum by (instance) (system_memory_usage_bytes)`), range, tick, { points });
  const memUsed = useRangeQuery(q(`sum by (instance) (system_memory_usage_bytes{state="used"})`), range, tick, { points });
  const net = useRangeQuery(q(`sum by (instance) (rate(system_network_io_bytes_total[${w}]))`), range, tick, { points });
  const cpuBy = byLabel(cpu, 'instance');
  const memBy = byLabel(mem, 'instance');
  const memUsedBy = byLabel(memUsed, 'instance');
  const netBy = byLabel(net, 'instance');
  const hosts = [...new Set([...cpuBy.keys(), ...memBy.keys(), ...netBy.keys()])].filter(Boolean).sort();
  const marks = useMarkersBy(hosts, anomalies, onHost);
  return (
    <Panel title={title} actions={<span class="muted small">from the agent's system metrics</span>}>
      <ErrorBox error={cpu.error || mem.error || net.error} what="Host metrics" />
      {names === null || (has && cpu.loading) ? (
        <Skeleton lines={2} />
      ) : hosts.length === 0 ? (
        <Empty hint={<>Run <code>sonde agent --endpoint http://127.0.0.1:4318</code> on each host.</>}>No host metrics yet.</Empty>
      ) : (
        <table class="grid hosts" data-testid="hosts" data-mode={cpu.mode} data-updated={cpu.updatedAt}>
          <colgroup>
            <col style={{ width: '22%' }} />
            <col style={{ width: '26%' }} />
            <col style={{ width: '26%' }} />
            <col style={{ width: '26%' }} />
          </colgroup>
          <thead>
            <tr>
              <th>host</th>
              <th class="num">CPU</th>
              <th class="num">memory</th>
              <th class="num">network</th>
            </tr>
          </thead>
          <tbody>
            {hosts.map((h) => (
              <tr key={h} data-testid="host-row" data-host={h} data-anomalies={marks.get(h)?.length || undefined}>
                <td>
                  <a href={href('/hosts', { host: h })}>{h}</a>
                </td>
                <td class="num">
                  <div class="cell-spark">
                    <span>{fmtPct(lastValue(cpuBy.get(h)))}</span>
                    <Sparkline values={cpuBy.get(h) ?? []} stroke={PALETTE[0]} max={1} xs={cpu.data[0]} markers={marks.get(h)} />
                  </div>
                </td>
                <td class="num">
                  <div class="cell-spark">
                    <span title={fmtBytes(lastValue(memUsedBy.get(h)))}>{fmtPct(lastValue(memBy.get(h)))}</span>
                    <Sparkline values={memBy.get(h) ?? []} stroke={PALETTE[8]} max={1} xs={mem.data[0]} markers={marks.get(h)} />
                  </div>
                </td>
                <td class="num">
                  <div class="cell-spark">
                    <span>{fmtBytes(lastValue(netBy.get(h)))}/s</span>
                    <Sparkline values={netBy.get(h) ?? []} stroke={PALETTE[2]} xs={net.data[0]} markers={marks.get(h)} />
                  </div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Panel>
  );
}

function RecentEvents() {
  const [events, setEvents] = useState<LogRecord[] | null>(null);
  const [err, setErr] = useState<unknown>(null);
  useEffect(() => {
    let alive = true;
    api<{ logs: LogRecord[] }>('/api/v1/events', { limit: 12 }).then(
      (r) => alive && setEvents((cur) => [...(cur ?? []), ...r.logs].slice(0, 12)),
      (e) => alive && (setErr(e), setEvents([])),
    );
    const stop = subscribe('/api/v1/tail', { signal: 'events' }, ['event'], (_t, ev: LogRecord) => {
      setEvents((cur) => [ev, ...(cur ?? [])].slice(0, 12));
    });
    return () => {
      alive = false;
      stop();
    };
  }, []);
  return (
    <Panel title="Latest events" actions={<a href={href('/logs', { signal: 'events' })}>all events →</a>}>
      <ErrorBox error={err} what="Loading events" />
      {events === null ? (
        <Skeleton lines={3} />
      ) : events.length === 0 ? (
        <Empty hint="Log records with an event name (deployments, page views, user actions) show here as they arrive.">No events yet.</Empty>
      ) : (
        <ul class="events" data-testid="events">
          {events.map((e, i) => (
            <li key={e.timeUnixNano + i}>
              <span class="mono muted">{fmtTime(nsToMs(e.timeUnixNano))}</span>
              <Badge kind="event">{e.eventName}</Badge>
              <span class="svc">
                <i style={{ background: serviceColor(e.service) }} />
                {e.service || '–'}
              </span>
              <span class="ellipsis" title={bodyText(e.body, e.attributes)}>{bodyText(e.body, e.attributes)}</span>
              {e.traceId && (
                <a class="small" href={href(`/traces/${e.traceId}`)}>
                  trace →
                </a>
              )}
            </li>
          ))}
        </ul>
      )}
    </Panel>
  );
}
