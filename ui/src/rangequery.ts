// A range query that keeps streaming. For a live (relative) range the
// server pushes it (stream.ts: one Server-Sent Events stream carries all
// the queries of a page with the same range and step): a snapshot of the
// window, then each new step, the last one repeated; the window slides as
// they arrive. Series live on one step grid, aligned to multiples of the
// step, so every answer lands on it and a repeated step replaces the
// values at its time (series.ts).
//
// A fixed range, or refresh "off", is one /api/v1/query_range. Against a
// server without the stream endpoint (404), or beyond the streams a page
// may hold, it polls query_range for the newest steps on each tick.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, queryRange } from './api';
import { alignDown, SeriesWindow, WindowData } from './series';
import { pushUnsupported, streamQuery } from './stream';
import { useRange } from './state';
import { bounds, niceStep } from './time';

export interface RangeData extends WindowData {
  error: ApiError | null;
  loading: boolean;
  updatedAt: number;
  /** how new points arrive */
  mode: 'push' | 'poll' | 'once';
}

const EMPTY: RangeData = { series: [], data: [[]], step: 0, error: null, loading: true, truncated: 0, updatedAt: 0, points: 0, mode: 'once' };

function toErr(e: unknown): ApiError {
  return e instanceof ApiError ? e : new ApiError(String((e as Error)?.message ?? e));
}

/**
 * `query` over `range`. Live ranges are pushed by the server while `live`
 * is true; a fixed range is one query. `tick` drives the polling fallback.
 * An empty query gives empty data.
 */
export function useRangeQuery(query: string, range: string, tick: number, opts: { points?: number; maxSeries?: number; live?: boolean } = {}): RangeData {
  const points = opts.points ?? 720;
  const { refresh } = useRange();
  const live = (opts.live ?? true) && bounds(range).live && refresh !== 'off';
  const [st, setSt] = useState<RangeData>(EMPTY);
  const poll = useRef<{ w: SeriesWindow; busy: boolean; ctl: AbortController } | null>(null);

  useEffect(() => {
    poll.current = null;
    if (!query.trim()) {
      setSt({ ...EMPTY, loading: false });
      return;
    }
    const b = bounds(range);
    const span = b.end - b.start;
    const step = niceStep(span, points);
    const maxSeries = opts.maxSeries ?? 200;
    const w = new SeriesWindow(step, maxSeries);
    const ctl = new AbortController();
    let closed = false;
    const emit = (mode: RangeData['mode'], error: ApiError | null = null) => {
      if (!closed) setSt({ ...w.snapshot(), error, loading: false, updatedAt: Date.now(), mode });
    };
    setSt((prev) => ({ ...prev, loading: true, error: null }));

    // One query_range over the window (fixed ranges, the first poll).
    const once = async (mode: RangeData['mode']) => {
      const bb = bounds(range);
      const gs = Math.ceil(bb.start / step) * step;
      const ge = Math.max(gs, alignDown(bb.end, step));
      const r = await queryRange(query, gs, ge, step, ctl.signal);
      w.reset(gs, ge);
      w.put(r);
      emit(mode);
    };
    const fail = (e: unknown) => {
      if (!closed) setSt((prev) => ({ ...prev, error: toErr(e), loading: false, updatedAt: Date.now() }));
    };
    const startPolling = () => {
      if (closed || poll.current) return;
      poll.current = { w, busy: true, ctl };
      once('poll')
        .catch(fail)
        .finally(() => poll.current && (poll.current.busy = false));
    };
    const stop = () => {
      closed = true;
      ctl.abort();
    };

    if (!live) {
      once('once').catch(fail);
      return stop;
    }
    if (pushUnsupported()) {
      startPolling();
      return stop;
    }
    const unsubscribe = streamQuery(query, span, step, maxSeries, {
      update: (d, error, pushed) => {
        if (!closed) setSt({ ...d, error, loading: false, updatedAt: Date.now(), mode: pushed ? 'push' : 'once' });
      },
      fallback: startPolling,
    });
    return () => {
      unsubscribe();
      stop();
    };
  }, [query, range, points, live]);

  // The polling fallback: the newest steps on each tick, from the last one
  // already shown (late samples may change it).
  useEffect(() => {
    const cur = poll.current;
    if (!tick || !cur || cur.busy || !live) return;
    cur.busy = true;
    const { w, ctl } = cur;
    const ge = alignDown(Date.now() / 1000, w.step);
    // From the last step shown but one (late samples may change them); a
    // window that never loaded (the first poll failed) is loaded whole.
    const fresh = !w.xs.length;
    if (fresh) {
      const b = bounds(range);
      w.reset(Math.ceil(b.start / w.step) * w.step, ge);
    }
    const last = w.xs[w.xs.length - 1];
    const from = fresh ? w.xs[0] : last - w.step;
    queryRange(query, from, Math.max(ge, last), w.step, ctl.signal)
      .then((r) => {
        w.slideTo(ge);
        w.replace(r);
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
