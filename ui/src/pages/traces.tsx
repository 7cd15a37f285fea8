// Trace search: service, span name, duration, status, attributes, time;
// the results as a duration scatter plot and a table.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, TraceSummary } from '../api';
import { Chart } from '../chart';
import { Badge, Empty, ErrorBox, Panel, Skeleton, serviceColor } from '../components';
import { href, navigate, setQuery, useRoute } from '../router';
import { useRange, useTick } from '../state';
import { bounds, fmtDateTime, fmtDurationNs, nsToMs, fmtTime } from '../time';

const FIELDS = ['service', 'name', 'minDuration', 'maxDuration', 'status', 'attr', 'limit'] as const;
type Form = Record<(typeof FIELDS)[number], string>;

export function Traces() {
  const { query } = useRoute();
  const { range } = useRange();
  const tick = useTick();
  const applied: Form = Object.fromEntries(FIELDS.map((f) => [f, query.get(f) ?? ''])) as Form;
  const [form, setForm] = useState<Form>(applied);
  const key = FIELDS.map((f) => applied[f]).join('\u0000');
  useEffect(() => setForm(applied), [key]);

  const [services, setServices] = useState<string[]>([]);
  const [ops, setOps] = useState<string[]>([]);
  useEffect(() => {
    api<string[]>('/api/services').then((s) => setServices(s ?? []), () => {});
  }, []);
  useEffect(() => {
    if (!form.service) return setOps([]);
    api<string[]>(`/api/services/${encodeURIComponent(form.service)}/operations`).then((o) => setOps(o ?? []), () => setOps([]));
  }, [form.service]);

  const [res, setRes] = useState<{ traces: TraceSummary[] | null; error: unknown; at: number }>({ traces: null, error: null, at: 0 });
  useEffect(() => {
    let alive = true;
    const b = bounds(range);
    const attrs = applied.attr.split(/[\s,]+/).filter((a) => a.includes('='));
    api<TraceSummary[]>('/api/v1/traces', {
      service: applied.service,
      name: applied.name,
      minDuration: applied.minDuration,
      maxDuration: applied.maxDuration,
      status: applied.status,
      attr: attrs,
      limit: applied.limit || '100',
      start: b.start.toFixed(3),
      end: b.end.toFixed(3),
    }).then(
      (traces) => alive && setRes({ traces, error: null, at: Date.now() }),
      (error) => alive && setRes((r) => ({ traces: r.traces ?? [], error, at: Date.now() })),
    );
    return () => {
      alive = false;
    };
  }, [key, range, Math.floor(tick / 2)]);

  const submit = (e: Event) => {
    e.preventDefault();
    setQuery({ ...form }, true);
  };
  const set = (k: keyof Form) => (e: Event) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value });

  const sorted = useMemo(() => [...(res.traces ?? [])].sort((a, b) => (BigInt(a.startTimeUnixNano) < BigInt(b.startTimeUnixNano) ? -1 : 1)), [res.traces]);
  const chartData = useMemo(() => {
    const xs = sorted.map((t) => nsToMs(t.startTimeUnixNano) / 1000);
    const ok = sorted.map((t) => (t.errorCount ? null : t.durationNs / 1e6));
    const bad = sorted.map((t) => (t.errorCount ? t.durationNs / 1e6 : null));
    return [xs, ok, bad];
  }, [sorted]);
  const maxDur = Math.max(1, ...(res.traces ?? []).map((t) => t.durationNs));

  return (
    <div class="page traces">
      <Panel>
        <form class="search-form" onSubmit={submit} data-testid="trace-form">
          <label>
            service
            <select value={form.service} onChange={set('service')} data-testid="f-service">
              <option value="">any</option>
              {[...new Set([...services, form.service].filter(Boolean))].map((s) => (
                <option key={s} value={s}>
                  {s}
                </option>
              ))}
            </select>
          </label>
          <label>
            span name
            <input list="ops" value={form.name} onInput={set('name')} placeholder="any" data-search />
            <datalist id="ops">
              {ops.map((o) => (
                <option key={o} value={o} />
              ))}
            </datalist>
          </label>
          <label class="short">
            min duration
            <input value={form.minDuration} onInput={set('minDuration')} placeholder="250ms" />
          </label>
          <label class="short">
            max duration
            <input value={form.maxDuration} onInput={set('maxDuration')} placeholder="5s" />
          </label>
          <label class="short">
            status
            <select value={form.status} onChange={set('status')}>
              <option value="">any</option>
              <option value="error">error</option>
            </select>
          </label>
          <label class="wide">
            attributes
            <input value={form.attr} onInput={set('attr')} placeholder="http.route=/cart user.id=42" />
          </label>
          <label class="short">
            limit
            <select value={form.limit || '100'} onChange={set('limit')}>
              {['20', '100', '500', '1000'].map((l) => (
                <option key={l}>{l}</option>
              ))}
            </select>
          </label>
          <button class="btn primary" type="submit">
            Search
          </button>
        </form>
      </Panel>
      <ErrorBox error={res.error} what="Trace search" />
      <Panel
        title="Duration"
        actions={
          <span class="muted small">
            {res.traces ? `${res.traces.length} traces${res.traces.length >= Number(applied.limit || 100) ? ' (limit reached)' : ''} · ${fmtTime(res.at)}` : ''}
          </span>
        }
      >
        {res.traces === null ? (
          <Skeleton height={200} />
        ) : res.traces.length === 0 ? (
          <div style={{ height: '200px' }}>
            <Empty hint="Widen the time range or loosen the filters.">No traces match.</Empty>
          </div>
        ) : (
          <Chart
            labels={['ok', 'error']}
            colors={['#38bdf8', '#f43f5e']}
            data={chartData}
            height={200}
            scatter
            yFmt={(v) => fmtDurationNs(v * 1e6)}
            testId="scatter"
            onPointClick={(idx) => sorted[idx] && navigate(href(`/traces/${sorted[idx].traceId}`))}
            onSelectRange={(from, to) => setQuery({ range: `${Math.floor(from)}-${Math.ceil(to)}` }, true)}
          />
        )}
      </Panel>
      <Panel>
        {res.traces && res.traces.length > 0 && (
          <table class="grid trace-list" data-testid="trace-list">
            <colgroup>
              <col style={{ width: '160px' }} />
              <col />
              <col style={{ width: '24%' }} />
              <col style={{ width: '70px' }} />
              <col style={{ width: '22%' }} />
            </colgroup>
            <thead>
              <tr>
                <th>start</th>
                <th>root span</th>
                <th>duration</th>
                <th class="num">spans</th>
                <th>services</th>
              </tr>
            </thead>
            <tbody>
              {res.traces.map((t) => (
                <tr key={t.traceId} class="clickable" data-testid="trace-row">
                  <td class="mono small">{fmtDateTime(nsToMs(t.startTimeUnixNano))}</td>
                  <td class="ellipsis">
                    <a href={href(`/traces/${t.traceId}`)}>
                      <span class="svc">
                        <i style={{ background: serviceColor(t.rootService) }} />
                        {t.rootService}
                      </span>{' '}
                      {t.rootName}
                    </a>
                    {t.errorCount > 0 && <Badge kind="err">{t.errorCount} error{t.errorCount > 1 ? 's' : ''}</Badge>}
                  </td>
                  <td>
                    <div class="dur-bar">
                      <i style={{ width: `${(100 * t.durationNs) / maxDur}%` }} class={t.errorCount ? 'bad' : ''} />
                      <span class="mono">{fmtDurationNs(t.durationNs)}</span>
                    </div>
                  </td>
                  <td class="num">{t.spanCount}</td>
                  <td class="small ellipsis" title={Object.entries(t.services).map(([s, n]) => `${s}: ${n} spans`).join('\n')}>
                    {Object.keys(t.services).map((s, i) => (
                      <span key={s} class="svc" style={i ? { marginLeft: '10px' } : undefined}>
                        <i style={{ background: serviceColor(s) }} />
                        {s}
                      </span>
                    ))}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Panel>
    </div>
  );
}
