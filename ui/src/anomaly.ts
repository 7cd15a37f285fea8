// Anomaly events (`anomaly.detected`) as the anomalies page, the service
// map and the chart markers read them: attributes, the score colours, and
// the events of the range fetched once per page (not once per chart).
import { useEffect, useState } from 'preact/hooks';
import { api, LogRecord } from './api';
import type { Marker } from './chart';
import { useRange } from './state';
import { bounds, fmtDateTime, fmtNum, nsToMs, parseDur } from './time';

export const ANOMALY_EVENT = 'anomaly.detected';
export const MAX_ANOMALIES = 500;

export const num = (v: unknown): number | null => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v !== '' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : null;
};
export const str = (v: unknown) => (v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v));
export const anomalyKey = (r: LogRecord) => r.timeUnixNano + '|' + str(r.attributes?.['anomaly.series']) + '|' + str(r.attributes?.['alert.rule']);
export const scoreOf = (r: LogRecord) => num(r.attributes?.['anomaly.score']);

// Scores are in [0, 1] and the built-in detectors alert from 0.25, so
// anything shown at all is already unusual: only the upper range is loud.
export function scoreColor(s: number | null): string {
  if (s === null) return 'var(--muted)';
  return s >= 0.6 ? 'var(--bad)' : s >= 0.4 ? 'var(--warn)' : 'var(--accent)';
}

/** The anomalous series' labels (the `series.*` attributes), without `__name__`. */
export function seriesLabels(r: LogRecord): Record<string, string> {
  const a = r.attributes ?? {};
  const out: Record<string, string> = {};
  for (const k of Object.keys(a)) if (k.startsWith('series.') && k !== 'series.__name__') out[k.slice(7)] = str(a[k]);
  return out;
}

/** A label set as one comparable string, ignoring `__name__`. */
export function labelsKey(m: Record<string, string>): string {
  return Object.keys(m)
    .filter((k) => k !== '__name__')
    .sort()
    .map((k) => `${k}=${JSON.stringify(m[k])}`)
    .join(',');
}

export function explanation(r: LogRecord): string {
  const a = r.attributes ?? {};
  return str(r.body) || `observed ${num(a['anomaly.observed']) ?? '?'} outside ${num(a['anomaly.expected_low']) ?? '?'} – ${num(a['anomaly.expected_high']) ?? '?'}`;
}

// `job` may be `namespace/name` where spans name the service alone.
export const ofService = (r: LogRecord, name: string) => r.service === name || r.service.endsWith('/' + name);

// Host series are keyed by `instance` (the agent's) or `host_name`.
export function onHost(r: LogRecord, host: string): boolean {
  const a = r.attributes ?? {};
  return r.host === host || str(a['series.host_name']) === host || str(a['series.instance']) === host;
}

/** Chart markers of events, coloured by score, the explanation as their title. */
export function anomalyMarkers(events: LogRecord[]): Marker[] {
  return events.map((r) => {
    const s = scoreOf(r);
    const rule = str(r.attributes?.['alert.rule']);
    return {
      t: nsToMs(r.timeUnixNano) / 1000,
      color: scoreColor(s),
      title: `${fmtDateTime(nsToMs(r.timeUnixNano))} · anomaly${rule ? ` (${rule})` : ''} · score ${s === null ? '?' : fmtNum(s, 3)}\n${explanation(r)}`,
    };
  });
}

/** How many ticks of the refresh make about `seconds` (once when refresh is off). */
export function ticksPer(refresh: string, seconds: number): number {
  return refresh === 'off' ? 1 : Math.max(1, Math.round(seconds / (parseDur(refresh) ?? seconds)));
}

/**
 * The anomaly events of the page's range, fetched again about every 10 s
 * while the range is live; `[]` until (or unless) they load, as markers
 * are an addition to a chart that should not hold it up.
 */
export function useAnomalyEvents(tick: number, filter: { service?: string; host?: string } = {}) {
  const { range, refresh } = useRange();
  const slot = Math.floor(tick / ticksPer(refresh, 10));
  const [st, setSt] = useState<{ events: LogRecord[]; error: unknown }>({ events: [], error: null });
  useEffect(() => {
    let alive = true;
    const b = bounds(range);
    api<{ logs: LogRecord[] }>('/api/v1/events', {
      name: ANOMALY_EVENT,
      start: b.start.toFixed(3),
      end: b.end.toFixed(3),
      service: filter.service,
      host: filter.host,
      limit: MAX_ANOMALIES,
    }).then(
      (r) => alive && setSt({ events: r.logs ?? [], error: null }),
      (error) => alive && setSt((s) => ({ ...s, error })),
    );
    return () => void (alive = false);
  }, [range, slot, filter.service, filter.host]);
  return st;
}
