// Logs and events: a live tail (Server-Sent Events from /api/v1/tail)
// with filters and pause, and a search over the time range with paging.
import { Component } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, LogRecord, subscribe } from '../api';
import { Badge, bodyText, Empty, ErrorBox, KV, Panel, Skeleton, serviceColor, severityKind } from '../components';
import { href, setQuery, useRoute } from '../router';
import { useRange } from '../state';
import { bounds, fmtDateTime, fmtTime, nsToMs } from '../time';

const MAX_ROWS = 1000;
const FIELDS = ['signal', 'service', 'severity', 'contains', 'attr', 'mode'] as const;
type Form = Record<(typeof FIELDS)[number], string>;

function filterParams(f: Form) {
  return {
    service: f.service,
    severity: f.severity,
    contains: f.contains,
    attr: f.attr.split(/[\s,]+/).filter((a) => a.includes('=')),
  };
}

export function Logs() {
  const { query } = useRoute();
  const { range } = useRange();
  const applied: Form = Object.fromEntries(FIELDS.map((f) => [f, query.get(f) ?? ''])) as Form;
  if (!applied.signal) applied.signal = 'all';
  const mode = applied.mode || (bounds(range).live ? 'live' : 'search');
  const key = FIELDS.map((f) => applied[f]).join('\u0000');
  const [form, setForm] = useState<Form>(applied);
  useEffect(() => setForm(applied), [key]);
  const set = (k: keyof Form) => (e: Event) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value });
  const [services, setServices] = useState<string[]>([]);
  useEffect(() => {
    api<{ name: string }[]>('/api/v1/services').then((s) => setServices(s.map((x) => x.name)), () => {});
  }, []);

  return (
    <div class="page logs">
      <Panel>
        <form
          class="search-form"
          onSubmit={(e) => {
            e.preventDefault();
            setQuery({ ...form }, true);
          }}
        >
          <div class="seg" role="group" aria-label="mode">
            <button type="button" class={mode === 'live' ? 'on' : ''} onClick={() => setQuery({ ...form, mode: 'live' }, true)} data-testid="mode-live">
              Live tail
            </button>
            <button type="button" class={mode === 'search' ? 'on' : ''} onClick={() => setQuery({ ...form, mode: 'search' }, true)} data-testid="mode-search">
              Search
            </button>
          </div>
          <label>
            signal
            <select value={form.signal} onChange={set('signal')}>
              <option value="all">logs & events</option>
              <option value="logs">logs only</option>
              <option value="events">events only</option>
            </select>
          </label>
          <label>
            service
            <select value={form.service} onChange={set('service')}>
              <option value="">any</option>
              {[...new Set([...services, form.service].filter(Boolean))].map((s) => (
                <option key={s}>{s}</option>
              ))}
            </select>
          </label>
          <label class="short">
            min severity
            <select value={form.severity} onChange={set('severity')}>
              <option value="">any</option>
              {['debug', 'info', 'warn', 'error', 'fatal'].map((s) => (
                <option key={s}>{s}</option>
              ))}
            </select>
          </label>
          <label class="wide">
            text
            <input value={form.contains} onInput={set('contains')} placeholder="contains…" data-search data-testid="f-contains" />
          </label>
          <label class="wide">
            attributes
            <input value={form.attr} onInput={set('attr')} placeholder="user.id=42" />
          </label>
          <button class="btn primary" type="submit">
            Apply
          </button>
        </form>
      </Panel>
      {mode === 'live' ? <LiveTail key={key} f={applied} /> : <Search key={key + range} f={applied} range={range} />}
    </div>
  );
}

function LiveTail({ f }: { f: Form }) {
  const [rows, setRows] = useState<LogRecord[] | null>(null);
  const [paused, setPaused] = useState(false);
  const [pending, setPending] = useState(0);
  const [state, setState] = useState<'connecting' | 'open' | 'error' | 'dropped'>('connecting');
  const [err, setErr] = useState<unknown>(null);
  const [rate, setRate] = useState(0);
  const buf = useRef<LogRecord[]>([]);
  const pausedRef = useRef(false);
  pausedRef.current = paused;
  const received = useRef(0);

  useEffect(() => {
    let alive = true;
    const p = filterParams(f);
    const path = f.signal === 'events' ? '/api/v1/events' : '/api/v1/logs';
    // The newest records first, so the tail never starts empty.
    api<{ logs: LogRecord[] }>(path, { ...p, limit: 100 }).then(
      (r) => alive && setRows((cur) => [...(cur ?? []), ...r.logs].slice(0, MAX_ROWS)),
      (e) => alive && (setErr(e), setRows((c) => c ?? [])),
    );
    let frame = 0;
    const flush = () => {
      frame = 0;
      if (pausedRef.current || !buf.current.length) return;
      const batch = buf.current.reverse();
      buf.current = [];
      setPending(0);
      setRows((cur) => [...batch, ...(cur ?? [])].slice(0, MAX_ROWS));
    };
    const stop = subscribe(
      '/api/v1/tail',
      { signal: f.signal, ...p },
      ['log', 'event'],
      (_t, rec: LogRecord) => {
        received.current++;
        buf.current.push(rec);
        if (buf.current.length > MAX_ROWS) buf.current.splice(0, buf.current.length - MAX_ROWS);
        if (pausedRef.current) setPending(buf.current.length);
        else if (!frame) frame = requestAnimationFrame(flush);
      },
      setState,
    );
    let last = 0;
    const rt = setInterval(() => {
      setRate(received.current - last);
      last = received.current;
    }, 1000);
    return () => {
      alive = false;
      stop();
      clearInterval(rt);
      cancelAnimationFrame(frame);
    };
  }, []);

  const toggle = () => {
    if (pausedRef.current && buf.current.length) {
      const batch = buf.current.reverse();
      buf.current = [];
      setRows((cur) => [...batch, ...(cur ?? [])].slice(0, MAX_ROWS));
    }
    setPending(0);
    setPaused(!pausedRef.current);
  };
  useEffect(() => {
    const k = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement;
      if (e.key === ' ' && !['INPUT', 'TEXTAREA', 'SELECT', 'BUTTON', 'A'].includes(t.tagName)) {
        e.preventDefault();
        toggle();
      }
    };
    addEventListener('keydown', k);
    return () => removeEventListener('keydown', k);
  }, []);

  return (
    <Panel
      title={
        <span class="tail-state" data-testid="tail-state">
          <i class={'dot ' + (paused ? 'paused' : state)} />
          {paused ? 'paused' : state === 'open' ? 'streaming' : state === 'dropped' ? 'fell behind; reconnecting' : state === 'error' ? 'disconnected; reconnecting' : 'connecting'}
          <span class="muted small"> · {rate}/s</span>
        </span>
      }
      actions={
        <button class="btn" onClick={toggle} data-testid="pause" title="pause / resume (Space)">
          {paused ? `Resume${pending ? ` (${pending} new)` : ''}` : 'Pause'}
        </button>
      }
    >
      <ErrorBox error={err} what="Loading logs" />
      {rows === null ? <Skeleton lines={10} /> : rows.length === 0 ? <Empty hint="New records appear here the moment they are stored.">Nothing yet; waiting for logs.</Empty> : <LogRows rows={rows} scroll />}
    </Panel>
  );
}

function Search({ f, range }: { f: Form; range: string }) {
  const [rows, setRows] = useState<LogRecord[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const load = (from: string | null) => {
    const b = bounds(range);
    setBusy(true);
    const path = f.signal === 'events' ? '/api/v1/events' : '/api/v1/logs';
    api<{ logs: LogRecord[]; nextCursor: string | null }>(path, { ...filterParams(f), start: b.start.toFixed(3), end: b.end.toFixed(3), limit: 200, cursor: from ?? undefined })
      .then(
        (r) => {
          let logs = r.logs;
          if (f.signal === 'logs') logs = logs.filter((l) => !l.eventName);
          setRows((cur) => (from ? [...(cur ?? []), ...logs] : logs));
          setCursor(r.nextCursor);
          setErr(null);
        },
        (e) => {
          setErr(e);
          setRows((c) => c ?? []);
        },
      )
      .finally(() => setBusy(false));
  };
  useEffect(() => load(null), []);
  return (
    <Panel title={rows ? `${rows.length}${cursor ? '+' : ''} records` : 'Searching…'}>
      <ErrorBox error={err} what="Log search" />
      {rows === null ? (
        <Skeleton lines={10} />
      ) : rows.length === 0 ? (
        <Empty hint="Widen the time range or loosen the filters.">No records match.</Empty>
      ) : (
        <>
          <LogRows rows={rows} />
          {cursor && (
            <button class="btn more" disabled={busy} onClick={() => load(cursor)}>
              {busy ? 'Loading…' : 'Load older'}
            </button>
          )}
        </>
      )}
    </Panel>
  );
}

// A stable key per record object: rows keep their DOM as new ones arrive
// on top, and unchanged rows are not re-rendered (memo).
const keys = new WeakMap<LogRecord, number>();
let nextKey = 0;
const keyOf = (l: LogRecord) => {
  let k = keys.get(l);
  if (k === undefined) keys.set(l, (k = nextKey++));
  return k;
};

function LogRows({ rows, scroll }: { rows: LogRecord[]; scroll?: boolean }) {
  const [open, setOpen] = useState<number | null>(null);
  const toggle = useCallback((k: number) => setOpen((o) => (o === k ? null : k)), []);
  return (
    <div class={'log-rows' + (scroll ? ' scroll' : '')} data-testid="log-rows" role="list" tabIndex={scroll ? 0 : undefined}>
      {rows.map((l) => {
        const k = keyOf(l);
        return <LogRow key={k} k={k} l={l} open={open === k} toggle={toggle} />;
      })}
    </div>
  );
}

interface RowProps {
  l: LogRecord;
  k: number;
  open: boolean;
  toggle: (k: number) => void;
}

/** Re-renders only when its record or its open state changes. */
class LogRow extends Component<RowProps> {
  shouldComponentUpdate(n: RowProps) {
    return n.l !== this.props.l || n.open !== this.props.open;
  }
  render() {
    return logRow(this.props);
  }
}

function logRow({ l, k, open, toggle }: RowProps) {
  return (
    <div class={'log-row' + (open ? ' open' : '')} role="listitem" data-testid="log-row" data-id={k}>
      <button class="log-line" onClick={() => toggle(k)} aria-expanded={open}>
        <span class="mono small muted">{fmtTime(nsToMs(l.timeUnixNano), true)}</span>
        <Badge kind={severityKind(l.severityNumber)}>{l.severityText || '–'}</Badge>
        <span class="svc small">
          <i style={{ background: serviceColor(l.service) }} />
          {l.service || '–'}
        </span>
        <span class="ellipsis">
          {l.eventName && <Badge kind="event">{l.eventName}</Badge>} {bodyText(l.body, l.attributes)}
        </span>
      </button>
      {l.traceId ? (
        <a class="small trace-link" href={href(`/traces/${l.traceId}`)} data-testid="trace-link" title={`trace ${l.traceId}`}>
          trace →
        </a>
      ) : (
        <span />
      )}
      {open && (
        <div class="log-detail">
          <div class="small muted">
            {fmtDateTime(nsToMs(l.timeUnixNano))} · host {l.host || '–'}
            {l.traceId && (
              <>
                {' '}
                · trace <span class="mono">{l.traceId}</span> span <span class="mono">{l.spanId}</span>
              </>
            )}
          </div>
          <pre class="log-body">{typeof l.body === 'string' ? l.body : JSON.stringify(l.body, null, 2)}</pre>
          <h3>Attributes</h3>
          <KV obj={l.attributes} />
          <h3>Resource</h3>
          <KV obj={l.resource} />
        </div>
      )}
    </div>
  );
}
