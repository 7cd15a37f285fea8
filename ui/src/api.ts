// Talking to the Sonde API: JSON helpers whose errors carry the server's
// own message, a shared "is the server reachable" state, and SSE.
import { Store } from './store';
import type { Metric } from './series';
export { seriesName } from './series';
export type { Metric } from './series';

export class ApiError extends Error {
  constructor(message: string, public status = 0, public kind = 'error') {
    super(message);
  }
  get unreachable() {
    return this.kind === 'unreachable';
  }
}

/** true while the last request reached the server. */
export const connection = new Store<{ up: boolean; since: number; message: string }>({ up: true, since: Date.now(), message: '' });

export function markUp() {
  if (!connection.get().up) connection.set({ up: true, since: Date.now(), message: '' });
}
function markDown(message: string) {
  if (connection.get().up) connection.set({ up: false, since: Date.now(), message });
}

/** After a stream broke: is the server there? (updates `connection`) */
export function checkServer() {
  fetch('/ready').then(
    (r) => (r.ok || r.status === 503 ? markUp() : markDown(`the server answered ${r.status}`)),
    () => markDown('cannot reach the Sonde server: is `sonde serve` running?'),
  );
}

export type Params = Record<string, string | number | undefined | null | (string | number)[]>;

export function qs(params?: Params): string {
  if (!params) return '';
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => u.append(k, String(x)));
    else u.append(k, String(v));
  }
  const s = u.toString();
  return s ? '?' + s : '';
}

/** GET (or another method) on the API; returns `data` of a success answer. */
export async function api<T>(path: string, params?: Params, init?: RequestInit): Promise<T> {
  let r: Response;
  try {
    r = await fetch(path + qs(params), { headers: { Accept: 'application/json' }, ...init });
  } catch (e) {
    const msg = 'cannot reach the Sonde server: is `sonde serve` running?';
    markDown(msg);
    throw new ApiError(msg, 0, 'unreachable');
  }
  // A proxy in front of a stopped server answers 502/503/504 without JSON.
  const text = await r.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    if (r.status >= 502 && r.status <= 504) {
      markDown(`the server answered ${r.status}`);
      throw new ApiError(`the server answered ${r.status} ${r.statusText}`, r.status, 'unreachable');
    }
  }
  markUp();
  if (!r.ok || (body && body.status === 'error')) {
    const msg = body?.error || text || `${r.status} ${r.statusText}`;
    throw new ApiError(msg, r.status, body?.errorType || 'error');
  }
  return body && 'data' in body ? (body.data as T) : (body as T);
}

export function send<T>(method: string, path: string, body?: unknown): Promise<T> {
  return api<T>(path, undefined, {
    method,
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

// --- Prometheus API --------------------------------------------------------

export interface MatrixSeries {
  metric: Metric;
  values: [number, string][];
}
export interface VectorSample {
  metric: Metric;
  value: [number, string];
}

export function queryRange(query: string, start: number, end: number, step: number, signal?: AbortSignal) {
  return api<{ resultType: string; result: MatrixSeries[] }>(
    '/api/v1/query_range',
    { query, start: start.toFixed(3), end: end.toFixed(3), step: String(step) },
    { signal },
  );
}

export function queryInstant(query: string, time?: number) {
  return api<{ resultType: string; result: any }>('/api/v1/query', { query, time: time?.toFixed(3) });
}

const cache = new Map<string, { at: number; p: Promise<any> }>();
/** A GET cached for `ttlMs` (label names and values for completion). */
export function cached<T>(path: string, params?: Params, ttlMs = 30_000): Promise<T> {
  const key = path + qs(params);
  const hit = cache.get(key);
  if (hit && Date.now() - hit.at < ttlMs) return hit.p;
  const p = api<T>(path, params);
  cache.set(key, { at: Date.now(), p });
  p.catch(() => cache.delete(key));
  return p;
}

export function metricNames() {
  return cached<string[]>('/api/v1/label/__name__/values', undefined, 5000);
}

// --- Traces, logs ---------------------------------------------------------

export interface TraceSummary {
  traceId: string;
  rootService: string;
  rootName: string;
  startTimeUnixNano: string;
  durationNs: number;
  spanCount: number;
  errorCount: number;
  /** spans per service */
  services: Record<string, number>;
}

export interface Span {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: string;
  service: string;
  host: string;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  durationNs: number;
  status: { code: string; message: string };
  attributes: Record<string, unknown>;
  resource: Record<string, unknown>;
  scope: { name: string; version: string };
  events: { timeUnixNano: string; name: string; attributes: Record<string, unknown> }[];
  links: { traceId: string; spanId: string; attributes: Record<string, unknown> }[];
}

export interface LogRecord {
  timeUnixNano: string;
  severityNumber: number;
  severityText: string;
  body: unknown;
  eventName: string;
  traceId: string;
  spanId: string;
  service: string;
  host: string;
  attributes: Record<string, unknown>;
  resource: Record<string, unknown>;
}

export interface Entity {
  name: string;
  signals: {
    metrics: { series: number };
    traces: { spans: number };
    logs: { records: number };
    events: { records: number };
  };
  firstSeenUnixNano: string | null;
  lastSeenUnixNano: string | null;
  hosts?: string[];
  services?: string[];
}

/** Server-Sent Events with reconnection; `onEvent(type, data)` per event. */
export function subscribe(
  path: string,
  params: Params,
  types: string[],
  onEvent: (type: string, data: any) => void,
  onState?: (state: 'open' | 'error' | 'dropped') => void,
): () => void {
  const es = new EventSource(path + qs(params));
  es.onopen = () => {
    markUp();
    onState?.('open');
  };
  es.onerror = () => {
    onState?.('error');
    checkServer();
  };
  for (const t of types) {
    es.addEventListener(t, (e) => {
      try {
        onEvent(t, JSON.parse((e as MessageEvent).data));
      } catch {
        /* a malformed event is skipped */
      }
    });
  }
  es.addEventListener('dropped', () => onState?.('dropped'));
  return () => es.close();
}
