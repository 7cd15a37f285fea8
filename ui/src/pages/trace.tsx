// One trace: a waterfall of its spans, the selected span's attributes,
// events and links, and the logs that carry the trace id.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, LogRecord, Span } from '../api';
import { Badge, bodyText, Empty, ErrorBox, KV, Panel, Skeleton, serviceColor, severityKind } from '../components';
import { href } from '../router';
import { fmtDateTime, fmtDurationNs, fmtTime, nsToMs } from '../time';

interface Row {
  span: Span;
  depth: number;
  start: number; // ns from trace start
  dur: number;
  children: number;
}

function layout(spans: Span[]): { rows: Row[]; t0: bigint; total: number } {
  if (!spans.length) return { rows: [], t0: 0n, total: 1 };
  const ids = new Set(spans.map((s) => s.spanId));
  const kids = new Map<string, Span[]>();
  const roots: Span[] = [];
  for (const s of spans) {
    if (s.parentSpanId && ids.has(s.parentSpanId)) {
      const a = kids.get(s.parentSpanId) ?? [];
      a.push(s);
      kids.set(s.parentSpanId, a);
    } else roots.push(s);
  }
  const byStart = (a: Span, b: Span) => (BigInt(a.startTimeUnixNano) < BigInt(b.startTimeUnixNano) ? -1 : BigInt(a.startTimeUnixNano) > BigInt(b.startTimeUnixNano) ? 1 : 0);
  let t0 = BigInt(spans[0].startTimeUnixNano);
  let t1 = BigInt(spans[0].endTimeUnixNano);
  for (const s of spans) {
    const a = BigInt(s.startTimeUnixNano);
    const b = BigInt(s.endTimeUnixNano);
    if (a < t0) t0 = a;
    if (b > t1) t1 = b;
  }
  const rows: Row[] = [];
  const seen = new Set<string>();
  const visit = (s: Span, depth: number) => {
    if (seen.has(s.spanId)) return; // a cycle in bad data
    seen.add(s.spanId);
    const c = (kids.get(s.spanId) ?? []).sort(byStart);
    rows.push({ span: s, depth, start: Number(BigInt(s.startTimeUnixNano) - t0), dur: s.durationNs, children: c.length });
    c.forEach((k) => visit(k, depth + 1));
  };
  roots.sort(byStart).forEach((r) => visit(r, 0));
  return { rows, t0, total: Math.max(1, Number(t1 - t0)) };
}

export function TraceView({ id }: { id: string }) {
  const [data, setData] = useState<{ spans: Span[]; logs: LogRecord[] } | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [sel, setSel] = useState<string | null>(null);
  const [collapsed, setCollapsed] = useState<Set<string>>(new Set());
  useEffect(() => {
    setData(null);
    setErr(null);
    api<{ spans: Span[]; logs: LogRecord[] }>(`/api/v1/traces/${id}`).then(setData, setErr);
  }, [id]);
  const { rows, t0, total } = useMemo(() => layout(data?.spans ?? []), [data]);
  useEffect(() => {
    if (rows.length && !sel) setSel(rows[0].span.spanId);
  }, [rows]);

  // Rows under a collapsed span are hidden.
  const visible = useMemo(() => {
    const out: Row[] = [];
    let hideBelow = -1;
    for (const r of rows) {
      if (hideBelow >= 0 && r.depth > hideBelow) continue;
      hideBelow = collapsed.has(r.span.spanId) ? r.depth : -1;
      out.push(r);
    }
    return out;
  }, [rows, collapsed]);

  if (err) return <ErrorBox error={err} what={`Trace ${id}`} />;
  if (!data)
    return (
      <div class="page">
        <Panel>
          <Skeleton lines={8} />
        </Panel>
      </div>
    );
  const root = rows[0]?.span;
  const selected = rows.find((r) => r.span.spanId === sel)?.span;
  const services = [...new Set(data.spans.map((s) => s.service))];
  const errors = data.spans.filter((s) => s.status.code === 'error').length;
  const ticks = [0, 0.25, 0.5, 0.75, 1];

  const onKey = (e: KeyboardEvent) => {
    const i = visible.findIndex((r) => r.span.spanId === sel);
    if (e.key === 'ArrowDown' || e.key === 'j') {
      e.preventDefault();
      const n = visible[Math.min(visible.length - 1, i + 1)];
      if (n) setSel(n.span.spanId);
    } else if (e.key === 'ArrowUp' || e.key === 'k') {
      e.preventDefault();
      const n = visible[Math.max(0, i - 1)];
      if (n) setSel(n.span.spanId);
    } else if ((e.key === 'ArrowLeft' || e.key === 'ArrowRight') && sel) {
      e.preventDefault();
      const c = new Set(collapsed);
      if (e.key === 'ArrowLeft') c.add(sel);
      else c.delete(sel);
      setCollapsed(c);
    }
  };

  return (
    <div class="page trace">
      <Panel>
        <div class="trace-head">
          <div>
            <div class="big">
              <span class="svc">
                <i style={{ background: serviceColor(root?.service ?? '') }} />
                {root?.service}
              </span>{' '}
              {root?.name}
            </div>
            <div class="muted small mono">trace {id}</div>
          </div>
          <dl class="facts">
            <div>
              <dt>started</dt>
              <dd>{fmtDateTime(Number(t0 / 1000000n))}</dd>
            </div>
            <div>
              <dt>duration</dt>
              <dd>{fmtDurationNs(total)}</dd>
            </div>
            <div>
              <dt>spans</dt>
              <dd data-testid="span-count">{data.spans.length}</dd>
            </div>
            <div>
              <dt>services</dt>
              <dd>{services.length}</dd>
            </div>
            <div>
              <dt>errors</dt>
              <dd class={errors ? 'bad' : ''}>{errors}</dd>
            </div>
            <div>
              <dt>logs</dt>
              <dd>{data.logs.length}</dd>
            </div>
          </dl>
        </div>
      </Panel>
      <div class="trace-body">
        <Panel class="waterfall-panel">
          <div class="wf" role="tree" aria-label="spans" tabIndex={0} onKeyDown={onKey} data-testid="waterfall">
            <div class="wf-axis">
              <div class="wf-name muted small">span</div>
              <div class="wf-track">
                {ticks.map((t) => (
                  <span key={t} style={{ left: `${t * 100}%` }} class={t === 1 ? 'end' : ''}>
                    {fmtDurationNs(total * t)}
                  </span>
                ))}
              </div>
            </div>
            {visible.map((r) => {
              const s = r.span;
              const left = (100 * r.start) / total;
              const width = Math.max(0.2, (100 * r.dur) / total);
              const bad = s.status.code === 'error';
              return (
                <div
                  key={s.spanId}
                  role="treeitem"
                  aria-selected={s.spanId === sel}
                  aria-expanded={r.children ? !collapsed.has(s.spanId) : undefined}
                  class={'wf-row' + (s.spanId === sel ? ' sel' : '')}
                  data-testid="span-row"
                  onClick={() => setSel(s.spanId)}
                >
                  <div class="wf-name" style={{ paddingLeft: `${r.depth * 14 + 4}px` }}>
                    {r.children > 0 ? (
                      <button
                        class="twist"
                        tabIndex={-1}
                        aria-label={collapsed.has(s.spanId) ? 'expand' : 'collapse'}
                        onClick={(e) => {
                          e.stopPropagation();
                          const c = new Set(collapsed);
                          c.has(s.spanId) ? c.delete(s.spanId) : c.add(s.spanId);
                          setCollapsed(c);
                        }}
                      >
                        {collapsed.has(s.spanId) ? '▸' : '▾'}
                      </button>
                    ) : (
                      <span class="twist" />
                    )}
                    <i class="svc-dot" style={{ background: serviceColor(s.service) }} title={s.service} />
                    <span class="ellipsis" title={`${s.service}: ${s.name}`}>
                      <span class="muted">{s.service}</span> {s.name}
                    </span>
                    {bad && <Badge kind="err">!</Badge>}
                  </div>
                  <div class="wf-track">
                    <div class={'wf-bar' + (bad ? ' bad' : '')} style={{ left: `${left}%`, width: `${width}%`, background: bad ? undefined : serviceColor(s.service) }} />
                    {s.events.map((ev, i) => (
                      <i key={i} class="wf-ev" title={ev.name} style={{ left: `${(100 * Number(BigInt(ev.timeUnixNano) - t0)) / total}%` }} />
                    ))}
                    <span
                      class={'wf-dur mono' + (left + width > 85 && width > 12 ? ' inside' : '')}
                      style={left + width <= 85 ? { left: `${left + width + 0.5}%` } : width > 12 ? { right: `${100 - left - width + 0.5}%` } : { right: `${100 - left + 0.5}%` }}
                    >
                      {fmtDurationNs(r.dur)}
                    </span>
                  </div>
                </div>
              );
            })}
          </div>
        </Panel>
        <div class="side">
          {selected && <SpanDetail span={selected} t0={t0} logs={data.logs.filter((l) => l.spanId === selected.spanId)} />}
        </div>
      </div>
      <Panel title={`Logs of this trace (${data.logs.length})`}>
        {data.logs.length === 0 ? (
          <Empty>No log records carry this trace id.</Empty>
        ) : (
          <LogTable logs={data.logs} onSpan={setSel} sel={sel} />
        )}
      </Panel>
    </div>
  );
}

function SpanDetail({ span, t0, logs }: { span: Span; t0: bigint; logs: LogRecord[] }) {
  return (
    <Panel title={span.name} class="span-detail">
      <div data-testid="span-detail">
        <dl class="facts col">
          <div>
            <dt>service</dt>
            <dd>
              <a href={href('/traces', { service: span.service })}>{span.service}</a>
              {span.host && <span class="muted"> on {span.host}</span>}
            </dd>
          </div>
          <div>
            <dt>duration</dt>
            <dd>
              {fmtDurationNs(span.durationNs)} <span class="muted small">at +{fmtDurationNs(Number(BigInt(span.startTimeUnixNano) - t0))}</span>
            </dd>
          </div>
          <div>
            <dt>kind · status</dt>
            <dd>
              {span.kind} · <span class={span.status.code === 'error' ? 'bad' : ''}>{span.status.code}</span>
              {span.status.message && <span class="muted"> {span.status.message}</span>}
            </dd>
          </div>
          <div>
            <dt>span id</dt>
            <dd class="mono small">
              {span.spanId}
              {span.parentSpanId && <span class="muted"> ← {span.parentSpanId}</span>}
            </dd>
          </div>
        </dl>
        <h3>Attributes</h3>
        <KV obj={span.attributes} />
        {span.events.length > 0 && (
          <>
            <h3>Events ({span.events.length})</h3>
            {span.events.map((e, i) => (
              <div key={i} class="span-ev">
                <div>
                  <b>{e.name}</b> <span class="muted small">+{fmtDurationNs(Number(BigInt(e.timeUnixNano) - BigInt(span.startTimeUnixNano)))}</span>
                </div>
                <KV obj={e.attributes} empty="" />
              </div>
            ))}
          </>
        )}
        {span.links.length > 0 && (
          <>
            <h3>Links</h3>
            <ul class="plain">
              {span.links.map((l, i) => (
                <li key={i}>
                  <a class="mono small" href={href(`/traces/${l.traceId}`)}>
                    {l.traceId.slice(0, 16)}…/{l.spanId}
                  </a>
                </li>
              ))}
            </ul>
          </>
        )}
        {logs.length > 0 && (
          <>
            <h3>Logs of this span ({logs.length})</h3>
            <ul class="plain small">
              {logs.map((l, i) => (
                <li key={i}>
                  <Badge kind={severityKind(l.severityNumber)}>{l.severityText}</Badge> {bodyText(l.body, l.attributes)}
                </li>
              ))}
            </ul>
          </>
        )}
        <h3>Resource</h3>
        <KV obj={span.resource} />
      </div>
    </Panel>
  );
}

export function LogTable({ logs, onSpan, sel }: { logs: LogRecord[]; onSpan?: (id: string) => void; sel?: string | null }) {
  return (
    <table class="grid logs-t">
      <colgroup>
        <col style={{ width: '110px' }} />
        <col style={{ width: '70px' }} />
        <col style={{ width: '140px' }} />
        <col />
      </colgroup>
      <tbody>
        {logs.map((l, i) => (
          <tr key={i} class={l.spanId && l.spanId === sel ? 'hl' : ''}>
            <td class="mono small">{fmtTime(nsToMs(l.timeUnixNano), true)}</td>
            <td>
              <Badge kind={severityKind(l.severityNumber)}>{l.severityText || '–'}</Badge>
            </td>
            <td class="small ellipsis">
              {l.service}
              {l.spanId && onSpan && (
                <button class="link small span-link" onClick={() => onSpan(l.spanId)} title={`select span ${l.spanId}`}>
                  span
                </button>
              )}
            </td>
            <td class="ellipsis">
              {l.eventName && <Badge kind="event">{l.eventName}</Badge>} {bodyText(l.body, l.attributes)}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
