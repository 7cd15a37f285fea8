// Hosts: each host's CPU, memory, network and disk, per second, from the
// agent's system metrics; the services seen on it; the host's anomaly
// events as markers on its charts.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, cached, Entity, LogRecord, metricNames } from '../api';
import { anomalyMarkers, onHost, useAnomalyEvents } from '../anomaly';
import { Chart, color, Marker } from '../chart';
import { Empty, ErrorBox, Panel, Skeleton } from '../components';
import { href, useRoute } from '../router';
import { useRangeQuery, RangeData } from '../rangequery';
import { useRange, useTick } from '../state';
import { fmtBytes, fmtCount, fmtPct, ago, nsToMs } from '../time';
import { HostsPanel } from './overview';

export function Hosts() {
  const { query } = useRoute();
  const tick = useTick();
  const [names, setNames] = useState<string[] | null>(null);
  const [instances, setInstances] = useState<string[] | null>(null);
  const [entities, setEntities] = useState<Entity[]>([]);
  const [err, setErr] = useState<unknown>(null);
  useEffect(() => {
    metricNames().then(setNames, (e) => (setErr(e), setNames([])));
    cached<string[]>('/api/v1/label/instance/values', { 'match[]': '{__name__=~"system_.+"}' }, 5000).then(setInstances, () => setInstances([]));
    api<Entity[]>('/api/v1/hosts').then(setEntities, () => {});
  }, [Math.floor(tick / 10)]);
  const host = query.get('host') || instances?.[0] || '';
  const { events: anomalies } = useAnomalyEvents(tick);
  return (
    <div class="page hosts-page">
      <ErrorBox error={err} what="Loading hosts" />
      <HostsPanel tick={tick} names={names} title="All hosts" anomalies={anomalies} />
      {instances === null ? (
        <Panel>
          <Skeleton height={240} />
        </Panel>
      ) : instances.length === 0 ? null : (
        <>
          <nav class="tabs" aria-label="hosts">
            {instances.map((h) => (
              <a key={h} href={href('/hosts', { host: h })} class={h === host ? 'on' : ''} aria-current={h === host ? 'page' : undefined}>
                {h}
              </a>
            ))}
          </nav>
          <HostDetail host={host} tick={tick} entity={entities.find((e) => e.name === host)} anomalies={anomalies} />
        </>
      )}
    </div>
  );
}

function esc(s: string) {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
}

function HostChart({ title, r, label, fmt, markers }: { title: string; r: RangeData; label: (m: Record<string, string>) => string; fmt: (v: number) => string; markers: Marker[] }) {
  const labels = useMemo(() => r.series.map((s) => label(s.metric)), [r.series]);
  return (
    <Panel title={title} class="host-chart">
      <ErrorBox error={r.error} what={title} />
      {r.loading && !r.series.length ? (
        <Skeleton height={180} />
      ) : !r.series.length ? (
        <div style={{ height: '180px' }}>
          <Empty>No data for this host.</Empty>
        </div>
      ) : (
        <>
          <Chart labels={labels} data={r.data} height={180} yFmt={fmt} testId="host-chart" markers={markers} />
          <div class="mini-legend small">
            {labels.map((l, i) => (
              <span key={l}>
                <i style={{ background: color(i) }} />
                {l}
              </span>
            ))}
          </div>
        </>
      )}
    </Panel>
  );
}

function HostDetail({ host, tick, entity, anomalies }: { host: string; tick: number; entity?: Entity; anomalies: LogRecord[] }) {
  const { range } = useRange();
  const markers = useMemo(() => anomalyMarkers(anomalies.filter((r) => onHost(r, host))), [anomalies, host]);
  const h = `instance="${esc(host)}"`;
  const points = 900; // one point a second over 15 minutes
  const cpu = useRangeQuery(host ? `avg by (state) (irate(system_cpu_time_seconds_total{${h},state!="idle"}[30s]))` : '', range, tick, { points });
  const mem = useRangeQuery(host ? `sum by (state) (system_memory_usage_bytes{${h}})` : '', range, tick, { points });
  const net = useRangeQuery(host ? `sum by (direction) (irate(system_network_io_bytes_total{${h}}[30s]))` : '', range, tick, { points });
  const disk = useRangeQuery(host ? `sum by (direction) (irate(system_disk_io_bytes_total{${h}}[30s]))` : '', range, tick, { points });
  return (
    <div class="host-detail">
      {entity && (
        <Panel>
          <dl class="facts">
            <div>
              <dt>services</dt>
              <dd>
                {(entity.services ?? []).length
                  ? (entity.services ?? []).map((s, i) => (
                      <span key={s}>
                        {i > 0 && ', '}
                        <a href={href('/traces', { service: s })}>{s}</a>
                      </span>
                    ))
                  : '–'}
              </dd>
            </div>
            <div>
              <dt>series</dt>
              <dd>{fmtCount(entity.signals.metrics.series)}</dd>
            </div>
            <div>
              <dt>spans · logs</dt>
              <dd>
                {fmtCount(entity.signals.traces.spans)} · {fmtCount(entity.signals.logs.records)}
              </dd>
            </div>
            <div>
              <dt>last seen</dt>
              <dd>{entity.lastSeenUnixNano ? ago(nsToMs(entity.lastSeenUnixNano)) : '–'}</dd>
            </div>
          </dl>
        </Panel>
      )}
      <div class="chart-grid">
        <HostChart title="CPU by state" r={cpu} label={(m) => m.state ?? ''} fmt={(v) => fmtPct(v)} markers={markers} />
        <HostChart title="Memory by state" r={mem} label={(m) => m.state ?? ''} fmt={(v) => fmtBytes(v)} markers={markers} />
        <HostChart title="Network" r={net} label={(m) => m.direction ?? 'total'} fmt={(v) => fmtBytes(v) + '/s'} markers={markers} />
        <HostChart title="Disk I/O" r={disk} label={(m) => m.direction ?? 'total'} fmt={(v) => fmtBytes(v) + '/s'} markers={markers} />
      </div>
    </div>
  );
}
