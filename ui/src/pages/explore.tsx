// Metrics explorer: PromQL with completion, a range chart that keeps
// streaming, a legend with the latest values; the URL holds the query and
// the range, so it can be shared. An anomaly event whose series labels are
// those of a plotted series (`__name__` aside) marks the chart.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { metricNames, seriesName } from '../api';
import { anomalyMarkers, labelsKey, seriesLabels, useAnomalyEvents } from '../anomaly';
import { Chart, color } from '../chart';
import { Empty, ErrorBox, Panel, Skeleton } from '../components';
import { PromQLEditor } from '../promql';
import { setQuery, useRoute } from '../router';
import { lastValue, useRangeQuery } from '../rangequery';
import { useRange, useTick } from '../state';
import { fmtNum, fmtTime, bounds } from '../time';

export function Explore() {
  const { query } = useRoute();
  const { range, refresh } = useRange();
  const q = query.get('q') ?? '';
  const [draft, setDraft] = useState(q);
  useEffect(() => setDraft(q), [q]);
  const tick = useTick();
  const r = useRangeQuery(q, range, tick, { points: 720 });
  const [hidden, setHidden] = useState<Set<number>>(new Set());
  useEffect(() => setHidden(new Set()), [q]);
  const labels = useMemo(() => r.series.map((s) => seriesName(s.metric)), [r.series]);
  const { events: anomalies } = useAnomalyEvents(tick);
  const markers = useMemo(() => {
    const plotted = new Set(r.series.map((s) => labelsKey(s.metric)));
    return anomalyMarkers(anomalies.filter((e) => plotted.has(labelsKey(seriesLabels(e)))));
  }, [r.series, anomalies]);
  const run = (v: string) => {
    setQuery({ q: v.trim() }, true);
  };
  const live = bounds(range).live && refresh !== 'off';

  return (
    <div class="page explore">
      <Panel>
        <div class="query-row">
          <PromQLEditor value={draft} onChange={setDraft} onRun={run} />
          <button class="btn primary" onClick={() => run(draft)} data-testid="run" title="run (Ctrl+Enter)">
            Run
          </button>
        </div>
        {!q && <Examples onPick={(v) => (setDraft(v), run(v))} />}
      </Panel>
      {q && (
        <Panel
          title={
            <span class="muted small" data-testid="chart-status" data-last-ts={lastTs(r.data)}>
              {r.loading ? 'loading…' : r.error && !r.series.length ? 'no result' : `${r.series.length} series · step ${r.step}s · ${r.points} points`}
              {r.truncated > 0 && ` · ${r.truncated} more series not shown`}
              {r.updatedAt > 0 && ` · updated ${fmtTime(r.updatedAt)}`}
              {live && (r.mode === 'push' ? ' · live, pushed by the server' : r.mode === 'poll' ? ` · live, polled every ${refresh}` : '')}
            </span>
          }
        >
          <ErrorBox error={r.error} what="Query" />
          {r.loading && !r.series.length ? (
            <Skeleton height={340} />
          ) : r.series.length === 0 && !r.error ? (
            <Empty hint="Check the metric name and labels; completion (Ctrl+Space) lists what exists.">The query returned no data in this range.</Empty>
          ) : r.series.length > 0 ? (
            <>
              <Chart
                labels={labels}
                data={r.data}
                height={340}
                hidden={hidden}
                testId="explore-chart"
                markers={markers}
                onSelectRange={(from, to) => setQuery({ range: `${Math.floor(from)}-${Math.ceil(to)}` }, true)}
              />
              <ul class="legend" data-testid="legend">
                {r.series.map((s, i) => (
                  <li key={s.key} class={hidden.has(i) ? 'off' : ''}>
                    <button
                      class="legend-i"
                      onClick={(e) => {
                        const h = new Set(hidden);
                        if ((e as MouseEvent).shiftKey) {
                          // shift: only this one
                          r.series.forEach((_, k) => k !== i && h.add(k));
                          h.delete(i);
                        } else if (h.has(i)) h.delete(i);
                        else h.add(i);
                        setHidden(h);
                      }}
                      title="click: hide/show · shift+click: only this one"
                    >
                      <i style={{ background: color(i) }} />
                      <span class="mono ellipsis">{labels[i]}</span>
                      <b class="mono">{fmtNum(lastValue(r.data[i + 1]))}</b>
                    </button>
                  </li>
                ))}
              </ul>
            </>
          ) : null}
        </Panel>
      )}
    </div>
  );
}

function Examples({ onPick }: { onPick: (q: string) => void }) {
  const [names, setNames] = useState<string[] | null>(null);
  useEffect(() => {
    metricNames().then(setNames, () => setNames([]));
  }, []);
  const ex: string[] = [];
  const has = (n: string) => names?.includes(n);
  if (has('http_server_request_duration_seconds_count')) {
    ex.push('sum by (job) (rate(http_server_request_duration_seconds_count[1m]))');
    ex.push('histogram_quantile(0.95, sum by (job, le) (rate(http_server_request_duration_seconds_bucket[1m])))');
  }
  if (has('system_cpu_time_seconds_total')) ex.push('1 - avg by (instance) (rate(system_cpu_time_seconds_total{state="idle"}[1m]))');
  if (has('system_network_io_bytes_total')) ex.push('sum by (instance, direction) (rate(system_network_io_bytes_total[1m]))');
  for (const n of names ?? []) {
    if (ex.length >= 6) break;
    if (!ex.some((e) => e.includes(n.replace(/_(bucket|count|sum)$/, '')))) ex.push(n.endsWith('_total') ? `rate(${n}[1m])` : n);
  }
  return (
    <div class="examples">
      <div class="muted small">
        {names === null ? 'Loading metric names…' : names.length ? `${names.length} metrics. Try:` : 'No metrics stored yet.'}
      </div>
      {names === null ? (
        <Skeleton lines={2} />
      ) : (
        <ul>
          {ex.map((e) => (
            <li key={e}>
              <button class="link mono" onClick={() => onPick(e)}>
                {e}
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** The newest time with a value in any series (the tests watch it grow). */
function lastTs(data: (number | null)[][]): number {
  const xs = data[0];
  for (let i = xs.length - 1; i >= 0; i--) {
    for (let k = 1; k < data.length; k++) if (data[k][i] !== null && data[k][i] !== undefined) return xs[i] as number;
  }
  return 0;
}
