// The pure part of live charts, with no imports (ui/tests/series.test.mjs
// runs it in Node): a window of series on one step grid that takes a
// snapshot and then pushed or polled updates, and a Server-Sent Events
// parser for streams read with fetch().
//
// Each update of /api/v1/stream/query_range (and each incremental poll)
// repeats the last step already received, recomputed since late samples
// may have changed it: points are replaced by timestamp, newer ones
// appended, and those older than the window dropped.

export type Metric = Record<string, string>;
/** The `data` of a Prometheus query or query_range answer. */
export type Result = { resultType: string; result: any };

/** A series' name as Prometheus prints it: name{a="b", ...}. */
export function seriesName(m: Metric): string {
  const name = m.__name__ ?? '';
  const labels = Object.keys(m)
    .filter((k) => k !== '__name__')
    .sort()
    .map((k) => `${k}="${m[k]}"`)
    .join(', ');
  return labels ? `${name}{${labels}}` : name || '{}';
}

export function asMatrix(r: Result): { metric: Metric; values: [number, string][] }[] {
  if (!r) return [];
  if (r.resultType === 'matrix') return r.result;
  if (r.resultType === 'vector') return r.result.map((s: any) => ({ metric: s.metric, values: [s.value] }));
  if (r.resultType === 'scalar') return [{ metric: {}, values: [r.result] }];
  return [];
}

export const alignDown = (t: number, step: number) => Math.floor(t / step + 1e-9) * step;

/** The newest and oldest times in answers, or null. */
export function timeSpan(rs: Result[]): { min: number; max: number } | null {
  let min = Infinity;
  let max = -Infinity;
  for (const r of rs) {
    for (const s of asMatrix(r)) {
      for (const [t] of s.values) {
        if (t < min) min = t;
        if (t > max) max = t;
      }
    }
  }
  return max >= min ? { min, max } : null;
}

/** The answers of one stream event: several queries share a stream. */
export function streamResults(data: any, queries: number): Result[] {
  if (data && Array.isArray(data.results)) return data.results;
  return queries === 1 ? [data] : [];
}

export interface WindowData {
  series: { key: string; metric: Metric }[];
  /** uPlot's aligned data: [xs, ...ys], xs in seconds. */
  data: (number | null)[][];
  step: number;
  truncated: number;
  /** distinct points received since the query started */
  points: number;
}

/**
 * Series on a grid of `step` seconds: xs[i] = xs[0] + i * step. Every
 * answer lands on the grid, so a point is stored by its timestamp and a
 * repeated one replaces the value there instead of adding a point.
 */
export class SeriesWindow {
  xs: number[] = [];
  ys = new Map<string, { metric: Metric; vals: (number | null)[] }>();
  truncated = 0;
  points = 0;
  constructor(public step: number, public maxSeries = 200) {}

  /** A fresh, empty window [gs, ge] on the step grid. */
  reset(gs: number, ge: number) {
    this.xs = [];
    for (let k = 0; gs + k * this.step <= ge + 1e-9; k++) this.xs.push(gs + k * this.step);
    this.ys.clear();
    this.truncated = 0;
    this.points = 0;
  }

  /** Moves the window so that it ends at `ge`, keeping its length; drops what falls out. */
  slideTo(ge: number) {
    const n = this.xs.length;
    if (!n) return;
    const last = this.xs[n - 1];
    const shift = Math.round((ge - last) / this.step);
    if (shift <= 0) return;
    if (shift >= n) {
      const pts = this.points;
      this.reset(last + (shift - n + 1) * this.step, last + shift * this.step);
      this.points = pts;
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

  private index(t: number): number {
    return this.xs.length ? Math.round((t - this.xs[0]) / this.step) : -1;
  }

  /**
   * Writes an answer's points by timestamp: a point already there is
   * replaced (and not counted again), a new one is added; points outside
   * the window are ignored.
   */
  put(r: Result) {
    const n = this.xs.length;
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
        const i = this.index(t);
        if (i < 0 || i >= n) continue;
        if (e.vals[i] === null) this.points++;
        e.vals[i] = Number(v);
      }
    }
    this.truncated = Math.max(this.truncated, dropped);
  }

  /**
   * An update that recomputed the steps from its oldest to its newest
   * time: its values replace whatever the window held at those steps,
   * including series that have no value there any more.
   */
  replace(r: Result) {
    const span = timeSpan([r]);
    const n = this.xs.length;
    const lo = span ? Math.max(0, this.index(span.min)) : 0;
    const hi = span ? Math.min(n - 1, this.index(span.max)) : -1;
    if (lo > hi) {
      this.put(r);
      return;
    }
    const had = new Map<string, boolean[]>();
    for (const [key, e] of this.ys) {
      const h: boolean[] = [];
      for (let i = lo; i <= hi; i++) {
        h.push(e.vals[i] !== null);
        e.vals[i] = null;
      }
      had.set(key, h);
    }
    this.put(r);
    // a value that was there already is not a new point
    for (const [key, h] of had) {
      const e = this.ys.get(key);
      if (!e) continue;
      for (let i = lo; i <= hi; i++) if (h[i - lo] && e.vals[i] !== null) this.points--;
      if (e.vals.every((v) => v === null)) this.ys.delete(key);
    }
  }

  snapshot(): WindowData {
    return {
      series: [...this.ys.entries()].map(([key, e]) => ({ key, metric: e.metric })),
      data: [this.xs, ...[...this.ys.values()].map((e) => e.vals)],
      step: this.step,
      truncated: this.truncated,
      points: this.points,
    };
  }
}

/**
 * Server-Sent Events from a byte stream (the EventSource format): call
 * `push` with each decoded chunk; `onEvent(type, data)` per complete event.
 * Comments (keep-alives) and `id`/`retry` fields are skipped.
 */
export class SseParser {
  private buf = '';
  private type = '';
  private data: string[] = [];
  constructor(private onEvent: (type: string, data: string) => void) {}

  push(chunk: string) {
    this.buf += chunk;
    for (;;) {
      const nl = this.buf.search(/\r\n|\r|\n/);
      // a lone \r at the end may be the first half of \r\n
      if (nl < 0 || (this.buf[nl] === '\r' && nl === this.buf.length - 1)) break;
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + (this.buf.startsWith('\r\n', nl) ? 2 : 1));
      this.line(line);
    }
  }

  private line(line: string) {
    if (line === '') {
      if (this.data.length) this.onEvent(this.type || 'message', this.data.join('\n'));
      this.type = '';
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const c = line.indexOf(':');
    const field = c < 0 ? line : line.slice(0, c);
    let value = c < 0 ? '' : line.slice(c + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.type = value;
    else if (field === 'data') this.data.push(value);
  }
}
