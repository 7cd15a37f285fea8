// A range query that keeps streaming. For a live (relative) range the
// server pushes it: GET /api/v1/stream/query_range (Server-Sent Events)
// sends a `snapshot` of the window, then `points` with each new step; the
// window slides as they arrive. Series live on one step grid, aligned to
// multiples of the step, so every answer lands on it.
//
// A fixed range, or refresh "off", is one /api/v1/query_range. When the
// stream cannot be opened (an older server), it falls back to polling
// query_range with an incremental window on each tick.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, checkServer, Metric, qs, queryRange, seriesName } from './api';
import { useRange } from './state';
import { bounds, niceStep } from './time';

export interface RangeData {
  series: { key: string; metric: Metric }[];
  /** uPlot's aligned data: [xs, ...ys], xs in seconds. */
  data: (number | null)[][];
  step: number;
  error: ApiError | null;
  loading: boolean;
  truncated: number;
  updatedAt: number;
  /** points received since the query started (for the tests and figures). */
  points: number;
  /** how new points arrive */
  mode: 'push' | 'poll' | 'once';
}

type Result = { resultType: string; result: any };

const EMPTY: RangeData = { series: [], data: [[]], step: 0, error: null, loading: true, truncated: 0, updatedAt: 0, points: 0, mode: 'once' };

class Window {
  xs: number[] = [];
  ys = new Map<string, { metric: Metric; vals: (number | null)[] }>();
  truncated = 0;
  points = 0;
  constructor(public step: number, public maxSeries: number) {}

  /** A fresh window [gs, ge] on the step grid. */
  reset(gs: number, ge: number) {
    this.xs = [];
    for (let t = gs; t <= ge + 1e-9; t += this.step) this.xs.push(t);
    this.ys.clear();
    this.truncated = 0;
  }

  /** Moves the window so that it ends at `ge`, keeping its length. */
  slideTo(ge: number) {
    const n = this.xs.length;
    if (!n) return;
    const last = this.xs[n - 1];
    const shift = Math.round((ge - last) / this.step);
    if (shift <= 0) return;
    if (shift >= n) {
      this.reset(ge - (n - 1) * this.step, ge);
      return;
    }
    this.xs.splice(0, shift);
    for (let k = 1; k <= shift; k++) this.xs.push(last + k * this.step);
    for (const [key, e] of this.ys) {
      e.vals.splice(0, shift);
      for (let k = 0; k < shift; k++) e.vals.push(null);
      if (e.vals.every((v) => v === null)) this.ys.delete(key);
    }
  }

  put(r: Result) {
    const n = this.xs.length;
    const x0 = this.xs[0];
    let dropped = 0;
    for (const s of asMatrix(r)) {
      const key = seriesName(s.metric);
      let e = this.ys.get(key);
      if (!e) {
        if (this.ys.size >= this.maxSeries) {
          dropped++;
          continue;
        }
        e = { metric: s.metric, vals: new Array(n).fill(null) };
        this.ys.set(key, e);
      }
      for (const [t, v] of s.values) {
        const i = Math.round((t - x0) / this.step);
        if (i >= 0 && i < n) {
          e.vals[i] = Number(v);
          this.points++;
        }
      }
    }
    this.truncated = Math.max(this.truncated, dropped);
  }

  /** The newest time in an answer, or null. */
  static maxT(r: Result): number | null {
    let m: number | null = null;
    for (const s of asMatrix(r)) for (const [t] of s.values) if (m === null || t > m) m = t;
    return m;
  }

  snapshot(): Pick<RangeData, 'series' | 'data' | 'step' | 'truncated' | 'points'> {
    return {
      series: [...this.ys.entries()].map(([key, e]) => ({ key, metric: e.metric })),
      data: [this.xs, ...[...this.ys.values()].map((e) => e.vals)],
      step: this.step,
      truncated: this.truncated,
      points: this.points,
    };
  }
}

function asMatrix(r: Result): { metric: Metric; values: [number, string][] }[] {
  if (r.resultType === 'matrix') return r.result;
  if (r.resultType === 'vector') return r.result.map((s: any) => ({ metric: s.metric, values: [s.value] }));
  if (r.resultType === 'scalar') return [{ metric: {}, values: [r.result] }];
  return [];
}

function toErr(e: unknown): ApiError {
  return e instanceof ApiError ? e : new ApiError(String((e as Error)?.message ?? e));
}

const alignDown = (t: number, step: number) => Math.floor(t / step) * step;

/** Servers without the push endpoint: remembered, so we poll at once. */
let pushUnsupported = false;

/**
 * Open streams. A browser keeps at most 6 HTTP/1.1 connections to a
 * server and each stream holds one, so only the main charts of a page are
 * pushed (`push: true`) and at most this many at once; the rest (the
 * sparklines) poll, which leaves connections for fetches and the tail.
 */
const MAX_STREAMS = 4;
let streams = 0;

/**
 * `query` over `range`. Live ranges stream (pushed by the server) while
 * `live` is true; a fixed range is one query. `tick` re-runs a fixed-range
 * query and drives the polling fallback. An empty query gives empty data.
 */
export function useRangeQuery(query: string, range: string, tick: number, opts: { points?: number; maxSeries?: number; live?: boolean; push?: boolean } = {}): RangeData {
  const points = opts.points ?? 720;
  const { refresh } = useRange();
  const live = (opts.live ?? true) && bounds(range).live && refresh !== 'off';
  const [st, setSt] = useState<RangeData>(EMPTY);
  const poll = useRef<{ w: Window; busy: boolean; ctl: AbortController } | null>(null);

  useEffect(() => {
    poll.current = null;
    if (!query.trim()) {
      setSt({ ...EMPTY, loading: false });
      return;
    }
    const b = bounds(range);
    const span = b.end - b.start;
    const step = niceStep(span, points);
    const w = new Window(step, opts.maxSeries ?? 200);
    const ctl = new AbortController();
    let closed = false;
    const emit = (mode: RangeData['mode'], error: ApiError | null = null) => {
      if (!closed) setSt({ ...w.snapshot(), error, loading: false, updatedAt: Date.now(), mode });
    };
    setSt((prev) => ({ ...prev, loading: true, error: null }));

    // One query_range over the window (fixed ranges, first poll, errors).
    const once = async (mode: RangeData['mode']) => {
      const bb = bounds(range);
      const gs = Math.ceil(bb.start / step) * step;
      const ge = Math.max(gs, alignDown(bb.end, step));
      const r = await queryRange(query, gs, ge, step, ctl.signal);
      w.reset(gs, ge);
      w.points = 0;
      w.put(r);
      emit(mode);
    };
    const fail = (e: unknown) => {
      if (!closed) setSt((prev) => ({ ...prev, error: toErr(e), loading: false, updatedAt: Date.now() }));
    };
    const startPolling = () => {
      poll.current = { w, busy: true, ctl };
      once('poll')
        .catch(fail)
        .finally(() => poll.current && (poll.current.busy = false));
    };

    if (!live) {
      once('once').catch(fail);
      return () => {
        closed = true;
        ctl.abort();
      };
    }
    if (pushUnsupported || !opts.push || streams >= MAX_STREAMS) {
      startPolling();
      return () => {
        closed = true;
        ctl.abort();
      };
    }
    streams++;

    let es: EventSource | null = null;
    let gotSnapshot = false;
    const open = () => {
      es = new EventSource('/api/v1/stream/query_range' + qs({ query, range: `${Math.round(span)}s`, step: String(step) }));
      es.addEventListener('snapshot', (ev) => {
        gotSnapshot = true;
        const r: Result = JSON.parse((ev as MessageEvent).data);
        const ge = alignDown(Date.now() / 1000, step);
        const end = Math.max(Window.maxT(r) ?? ge, ge);
        w.reset(end - Math.round(span / step) * step, end);
        w.points = 0;
        w.put(r);
        emit('push');
      });
      es.addEventListener('points', (ev) => {
        const r: Result = JSON.parse((ev as MessageEvent).data);
        const end = Math.max(Window.maxT(r) ?? 0, alignDown(Date.now() / 1000, step));
        w.slideTo(end);
        w.put(r);
        emit('push');
      });
      es.addEventListener('error', (ev) => {
        const data = (ev as MessageEvent).data;
        if (typeof data === 'string' && data) {
          // a query error while streaming, with the server's message
          setSt((prev) => ({ ...prev, error: new ApiError(data, 422, 'execution'), loading: false }));
          return;
        }
        if (gotSnapshot) {
          // The browser reconnects by itself and a new snapshot follows;
          // meanwhile say whether the server is there at all.
          checkServer();
          return;
        }
        // The stream did not open: ask query_range why (a bad query gives
        // its message; a server without the push endpoint gets polled).
        es?.close();
        once('poll').then(
          () => {
            pushUnsupported = true;
            poll.current = { w, busy: false, ctl };
          },
          (e) => {
            fail(e);
            // the server is down or the query is bad: try streaming again later
            if (!closed) retry = setTimeout(open, toErr(e).unreachable ? 3000 : 30_000);
          },
        );
      });
    };
    let retry: ReturnType<typeof setTimeout> | undefined;
    open();
    return () => {
      streams--;
      closed = true;
      clearTimeout(retry);
      es?.close();
      ctl.abort();
    };
  }, [query, range, points, live]);

  // Polling fallback, and re-running fixed-range queries, on each tick.
  useEffect(() => {
    const cur = poll.current;
    if (!tick || !cur || cur.busy || !live) return;
    cur.busy = true;
    const { w, ctl } = cur;
    const last = w.xs[w.xs.length - 1];
    const ge = alignDown(Date.now() / 1000, w.step);
    queryRange(query, last - w.step, Math.max(ge, last), w.step, ctl.signal)
      .then((r) => {
        w.slideTo(ge);
        w.put(r);
        if (!ctl.signal.aborted) setSt({ ...w.snapshot(), error: null, loading: false, updatedAt: Date.now(), mode: 'poll' });
      })
      .catch((e) => {
        if (!ctl.signal.aborted) setSt((prev) => ({ ...prev, error: toErr(e), loading: false }));
      })
      .finally(() => {
        cur.busy = false;
      });
  }, [tick]);

  return st;
}

/** The last non-null value of a series. */
export function lastValue(vals: (number | null)[] | undefined): number | null {
  if (!vals) return null;
  for (let i = vals.length - 1; i >= 0; i--) if (vals[i] !== null) return vals[i];
  return null;
}
