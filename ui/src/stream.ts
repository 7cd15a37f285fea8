// Live range queries pushed by the server, many per connection.
//
// GET /api/v1/stream/query_range (Server-Sent Events, read with fetch() so
// that the status of a refused stream is known) takes up to 20 `query`
// parameters sharing one range and step: a `snapshot` of the window, then
// every second `points` with the steps computed since, the last one
// already sent repeated (recomputed: late samples may change it). A
// browser keeps only 6 HTTP/1.1 connections per server and each stream
// holds one, so every query of a page with the same range and step goes in
// one stream (a page of sparklines is one connection), and at most
// MAX_STREAMS are open at once: with the live tail, one connection stays
// free for ordinary fetches. A query beyond that, or every query against a
// server without the endpoint (404), is polled instead (rangequery.ts).
import { ApiError, checkServer, markUp, qs, queryRange } from './api';
import { alignDown, SeriesWindow, SseParser, streamResults, timeSpan, WindowData } from './series';

/** Queries per stream (the server's limit). */
export const MAX_QUERIES = 20;
/** Streams open at once. */
export const MAX_STREAMS = 4;

export interface Subscriber {
  /** the query's window after the snapshot or an update; `live`: false for a query the server refused */
  update(d: WindowData, error: ApiError | null, live: boolean): void;
  /** the query is not pushed (no stream endpoint, or no connection left): poll it */
  fallback(): void;
}

class Entry {
  subs = new Set<Subscriber>();
  error: ApiError | null = null;
  ready = false;
  /** refused by the server (a bad query): not streamed while subscribed */
  bad = false;
  constructor(public w: SeriesWindow) {}
  notify() {
    const d = this.w.snapshot();
    for (const s of this.subs) s.update(d, this.error, !this.bad);
  }
}

class Conn {
  ctl = new AbortController();
  closed = false;
  constructor(public queries: string[]) {}
}

/** The queries of one range and step, and the streams that carry them. */
class Group {
  entries = new Map<string, Entry>();
  conns: Conn[] = [];
  timer?: ReturnType<typeof setTimeout>;
  failures = 0;
  constructor(public key: string, public span: number, public step: number) {}
}

const groups = new Map<string, Group>();
let open = 0;
let unsupported = false;

/** The server has no stream endpoint: poll everything. */
export const pushUnsupported = () => unsupported;
/** Streams open now (the tests and figures). */
export const openStreams = () => open;

/**
 * Pushes `query` over the last `span` seconds at `step` to `sub`, in the
 * stream shared by all subscribers of the same span and step. Returns the
 * unsubscribe function.
 */
export function streamQuery(query: string, span: number, step: number, maxSeries: number, sub: Subscriber): () => void {
  const key = `${span}|${step}`;
  let g = groups.get(key);
  if (!g) groups.set(key, (g = new Group(key, span, step)));
  let e = g.entries.get(query);
  if (!e) g.entries.set(query, (e = new Entry(new SeriesWindow(step, maxSeries))));
  e.subs.add(sub);
  if (e.ready) sub.update(e.w.snapshot(), e.error, !e.bad);
  // Components of a page subscribe one after the other: open once for all.
  schedule(g, 20);
  const group = g;
  const entry = e;
  return () => {
    entry.subs.delete(sub);
    schedule(group, 20);
  };
}

function schedule(g: Group, ms: number) {
  clearTimeout(g.timer);
  g.timer = setTimeout(() => sync(g), ms);
}

/** Opens streams for exactly the subscribed queries (unless they already are). */
function sync(g: Group) {
  g.timer = undefined;
  for (const [q, e] of g.entries) if (!e.subs.size) g.entries.delete(q);
  const want = [...g.entries].filter(([, e]) => !e.bad).map(([q]) => q);
  const have = new Set(g.conns.flatMap((c) => c.queries));
  if (want.length === have.size && want.every((q) => have.has(q))) {
    if (!g.entries.size && groups.get(g.key) === g) groups.delete(g.key);
    return;
  }
  for (const c of g.conns) close(c);
  g.conns = [];
  if (!g.entries.size) {
    if (groups.get(g.key) === g) groups.delete(g.key);
    return;
  }
  for (let i = 0; i < want.length; i += MAX_QUERIES) {
    const chunk = want.slice(i, i + MAX_QUERIES);
    if (unsupported || open >= MAX_STREAMS) {
      fallback(g, chunk);
      continue;
    }
    const c = new Conn(chunk);
    open++;
    g.conns.push(c);
    run(g, c);
  }
}

function close(c: Conn) {
  if (c.closed) return;
  c.closed = true;
  open--;
  c.ctl.abort();
}

/** Hands queries over to polling. */
function fallback(g: Group, queries: string[]) {
  for (const q of queries) {
    const e = g.entries.get(q);
    if (!e) continue;
    g.entries.delete(q);
    for (const s of [...e.subs]) s.fallback();
  }
}

async function run(g: Group, c: Conn) {
  const url = '/api/v1/stream/query_range' + qs({ query: c.queries, range: `${Math.round(g.span)}s`, step: String(g.step) });
  let r: Response;
  try {
    r = await fetch(url, { signal: c.ctl.signal, headers: { Accept: 'text/event-stream' } });
  } catch {
    if (!c.closed) lost(g, c);
    return;
  }
  if (c.closed) {
    r.body?.cancel().catch(() => {});
    return;
  }
  if (!r.ok) {
    const text = await r.text().catch(() => '');
    if (c.closed) return;
    drop(g, c);
    if (r.status === 404) {
      // An older server: every chart polls from now on.
      unsupported = true;
      for (const other of groups.values()) {
        for (const x of other.conns) close(x);
        other.conns = [];
        fallback(other, [...other.entries.keys()]);
      }
      return;
    }
    let body: any = null;
    try {
      body = JSON.parse(text);
    } catch {
      /* a proxy's page */
    }
    const err = new ApiError(body?.error || `${r.status} ${r.statusText}`, r.status, body?.errorType || (r.status >= 502 && r.status <= 504 ? 'unreachable' : 'error'));
    if (r.status === 400 || r.status === 422) await refused(g, c, err);
    else lost(g, c, err);
    return;
  }
  markUp();
  g.failures = 0;
  const parser = new SseParser((type, data) => onEvent(g, c, type, data));
  try {
    const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done || c.closed) break;
      parser.push(value);
    }
  } catch {
    /* aborted, or the connection broke */
  }
  // The server went away or restarted: reconnect (a new snapshot follows).
  if (!c.closed) lost(g, c);
}

function drop(g: Group, c: Conn) {
  close(c);
  g.conns = g.conns.filter((x) => x !== c);
}

/** The stream broke or could not be opened: say whether the server is there, and retry. */
function lost(g: Group, c: Conn, err?: ApiError) {
  drop(g, c);
  checkServer();
  if (err) {
    for (const q of c.queries) {
      const e = g.entries.get(q);
      if (!e) continue;
      e.error = err;
      e.ready = true;
      e.notify();
    }
  }
  g.failures++;
  schedule(g, g.failures <= 1 ? 1000 : 3000);
}

/**
 * The server refused the stream (a query that does not parse or cannot
 * run): find which query, show its error on its charts, and stream the
 * others without it.
 */
async function refused(g: Group, c: Conn, err: ApiError) {
  const bad = (q: string, why: ApiError) => {
    const e = g.entries.get(q);
    if (!e) return;
    e.bad = true;
    e.ready = true;
    e.error = why;
    e.notify();
  };
  if (c.queries.length === 1) {
    bad(c.queries[0], err);
  } else {
    const end = alignDown(Date.now() / 1000, g.step);
    const res = await Promise.allSettled(c.queries.map((q) => queryRange(q, end - g.step, end, g.step)));
    let found = false;
    res.forEach((r, i) => {
      if (r.status === 'rejected' && r.reason instanceof ApiError && (r.reason.status === 400 || r.reason.status === 422)) {
        bad(c.queries[i], r.reason);
        found = true;
      }
    });
    if (!found) {
      // none fails alone: say so, and try again later
      for (const q of c.queries) {
        const e = g.entries.get(q);
        if (!e) continue;
        e.error = err;
        e.ready = true;
        e.notify();
      }
      g.failures++;
      schedule(g, 30_000);
      return;
    }
  }
  schedule(g, 0);
}

function onEvent(g: Group, c: Conn, type: string, data: string) {
  if (c.closed) return;
  if (type === 'error') {
    // a query failed on this update (the next one retries its steps)
    const err = new ApiError(data || 'the query failed', 422, 'execution');
    for (const q of c.queries) {
      const e = g.entries.get(q);
      if (!e) continue;
      e.error = err;
      e.notify();
    }
    return;
  }
  if (type !== 'snapshot' && type !== 'points') return;
  let parsed: any;
  try {
    parsed = JSON.parse(data);
  } catch {
    return;
  }
  const rs = streamResults(parsed, c.queries.length);
  // One end for all the stream's queries: their charts share the time axis.
  const now = alignDown(Date.now() / 1000, g.step);
  const end = Math.max(now, timeSpan(rs)?.max ?? now);
  const n = Math.round(g.span / g.step);
  c.queries.forEach((q, i) => {
    const e = g.entries.get(q);
    if (!e || !e.subs.size) return;
    if (type === 'snapshot') {
      e.w.reset(end - n * g.step, end);
      e.w.put(rs[i]);
    } else {
      e.w.slideTo(end);
      e.w.replace(rs[i]);
    }
    e.error = null;
    e.ready = true;
    e.notify();
  });
}
