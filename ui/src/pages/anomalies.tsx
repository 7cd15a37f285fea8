// Anomalies: the `anomaly.detected` events of the time range (newest first)
// plus live ones from the events tail, of one service when the URL names
// one (`service=`, the service map links here so); a scatter of their
// scores over time and the list with each explanation.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { LogRecord, api, subscribe } from '../api';
import { ANOMALY_EVENT as NAME, MAX_ANOMALIES as MAX, anomalyKey as key, explanation, num, scoreColor, seriesLabels, str } from '../anomaly';
import { Chart } from '../chart';
import { Empty, ErrorBox, Panel, Skeleton } from '../components';
import { href, navigate, setQuery, useRoute } from '../router';
import { useRange } from '../state';
import { bounds, fmtDateTime, fmtNum, nsToMs } from '../time';

export function Anomalies() {
  const { range } = useRange();
  const service = useRoute().query.get('service') ?? '';
  const [rows, setRows] = useState<LogRecord[] | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [tail, setTail] = useState<'connecting' | 'open' | 'error' | 'dropped'>('connecting');
  const [open, setOpen] = useState<string | null>(null);

  useEffect(() => {
    let alive = true;
    const b = bounds(range);
    setRows(null);
    api<{ logs: LogRecord[] }>('/api/v1/events', { name: NAME, service, start: b.start.toFixed(3), end: b.live ? undefined : b.end.toFixed(3), limit: MAX }).then(
      (r) =>
        alive &&
        setRows((cur) => {
          const seen = new Set((cur ?? []).map(key));
          return [...(cur ?? []), ...r.logs.filter((x) => !seen.has(key(x)))].slice(0, MAX);
        }),
      (e) => alive && (setErr(e), setRows((c) => c ?? [])),
    );
    if (!b.live) return () => void (alive = false);
    const stop = subscribe(
      '/api/v1/tail',
      { signal: 'events', name: NAME, service },
      ['event', 'log'],
      // the tail filters by service too; this guards against one that did not
      (_t, rec: LogRecord) => alive && (!service || rec.service === service) && setRows((cur) => [rec, ...(cur ?? [])].slice(0, MAX)),
      setTail,
    );
    return () => {
      alive = false;
      stop();
    };
  }, [range, service]);

  const sorted = useMemo(() => [...(rows ?? [])].sort((a, b) => (BigInt(a.timeUnixNano) < BigInt(b.timeUnixNano) ? 1 : -1)), [rows]);
  const chartData = useMemo(() => {
    const asc = [...sorted].reverse();
    return [asc.map((r) => nsToMs(r.timeUnixNano) / 1000), asc.map((r) => num(r.attributes?.['anomaly.score']))];
  }, [sorted]);
  const maxScore = Math.max(1, ...sorted.map((r) => Math.abs(num(r.attributes?.['anomaly.score']) ?? 0)));
  const live = bounds(range).live;

  return (
    <div class="page anomalies">
      <ErrorBox error={err} what="Loading anomalies" />
      <Panel
        title="Anomaly scores"
        actions={
          <>
            {service && (
              <span class="filter-chip" data-testid="anomaly-filter" data-service={service}>
                service <b>{service}</b>
                <button onClick={() => setQuery({ service: null }, true)} title="show every service" aria-label="clear the service filter" data-testid="anomaly-filter-clear">
                  ×
                </button>
              </span>
            )}
            <span class="muted small" data-testid="anomaly-tail">
              {rows ? `${sorted.length} anomalies` : ''}
              {live ? ` · live tail ${tail === 'open' ? 'streaming' : tail}` : ' · fixed range'}
            </span>
          </>
        }
      >
        {rows === null ? (
          <Skeleton height={180} />
        ) : sorted.length === 0 ? (
          <div style={{ height: '180px' }}>
            <Empty hint={<>Anomaly detection emits <code>{NAME}</code> events when a watched series leaves its expected band.</>}>
              No anomalies{service ? ` of ${service}` : ''} in this time range.
            </Empty>
          </div>
        ) : (
          <Chart labels={['score']} colors={['#fb7185']} data={chartData} height={180} scatter yFmt={(v) => fmtNum(v, 3)} testId="anomaly-chart" onPointClick={(i) => {
            const r = sorted[sorted.length - 1 - i];
            if (r) setOpen(key(r));
          }} />
        )}
      </Panel>
      <Panel title="Anomalies" actions={<span class="muted small">newest first</span>}>
        {rows === null ? (
          <Skeleton lines={4} />
        ) : sorted.length === 0 ? (
          <Empty>Nothing detected.</Empty>
        ) : (
          <ul class="anomaly-list" data-testid="anomalies">
            {sorted.map((r) => {
              const a = r.attributes ?? {};
              const score = num(a['anomaly.score']);
              const k = key(r);
              const labels = Object.entries(seriesLabels(r))
                .sort(([x], [y]) => x.localeCompare(y))
                .map(([k, v]) => `${k}="${v}"`);
              const rule = str(a['alert.rule']);
              const series = str(a['anomaly.series']);
              const low = num(a['anomaly.expected_low']);
              const high = num(a['anomaly.expected_high']);
              const obs = num(a['anomaly.observed']);
              return (
                <li key={k} class={'anomaly' + (open === k ? ' open' : '')} data-testid="anomaly-row">
                  <button class="anomaly-h" onClick={() => setOpen(open === k ? null : k)} aria-expanded={open === k}>
                    <span class="score" title={`score ${score ?? '?'}`}>
                      <span class="score-bar" style={{ width: `${Math.min(100, (Math.abs(score ?? 0) / maxScore) * 100)}%`, background: scoreColor(score) }} />
                      <span class="score-n mono">{score === null ? '?' : fmtNum(score, 3)}</span>
                    </span>
                    <span class="muted small nowrap">{fmtDateTime(nsToMs(r.timeUnixNano))}</span>
                    <strong class="mono">{rule || series || NAME}</strong>
                    {r.service && <span class="badge">{r.service}</span>}
                    <span class="small muted ellipsis">{labels.join(', ')}</span>
                  </button>
                  <div class="anomaly-body" data-testid="anomaly-explanation">
                    {explanation(r)}
                  </div>
                  {open === k && (
                    <table class="kv small">
                      <tbody>
                        {series && (
                          <tr>
                            <th>series</th>
                            <td class="mono">
                              <a href={href('/explore', { q: series })} onClick={(e) => (e.preventDefault(), navigate(href('/explore', { q: series })))}>
                                {series}
                              </a>
                            </td>
                          </tr>
                        )}
                        <tr>
                          <th>observed</th>
                          <td class="mono">{obs === null ? '–' : fmtNum(obs, 4)}</td>
                        </tr>
                        <tr>
                          <th>expected</th>
                          <td class="mono">
                            {low === null ? '–' : fmtNum(low, 4)} – {high === null ? '–' : fmtNum(high, 4)}
                          </td>
                        </tr>
                        {Object.keys(a)
                          .filter((x) => !x.startsWith('anomaly.') && x !== 'event.name')
                          .sort()
                          .map((x) => (
                            <tr key={x}>
                              <th>{x}</th>
                              <td class="mono">{str(a[x])}</td>
                            </tr>
                          ))}
                      </tbody>
                    </table>
                  )}
                </li>
              );
            })}
          </ul>
        )}
      </Panel>
    </div>
  );
}
